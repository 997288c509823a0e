// Makes resnet_kernels._C an importable Python module. Importing it loads the
// library, whose static TORCH_LIBRARY_* initialisers register the ops; the
// module itself has no Python-level functions (the ops are torch.ops.resnet_kernels.*).
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

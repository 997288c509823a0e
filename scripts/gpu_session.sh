#!/usr/bin/env bash
# One call on a bare GPU machine with no network: build the CUDA extension, run
# the tests, run the benchmarks, write the report; everything into one folder.
#
# usage: scripts/gpu_session.sh [options] [STAGE ...]
#
# Stages, run in this order (default: all of them):
#   versions  versions.txt: GPU and driver (nvidia-smi), torch, CUDA, cuDNN, Triton, nvcc, date
#   build     pip install -e . with the CUDA extension (TORCH_CUDA_ARCH_LIST, default 9.0a);
#             RK_SKIP_BUILD=1 instead checks that a carried resnet_kernels/_C*.so loads
#   kernels   CMake build of csrc/kernels + ctest (the kernels against a naive CUDA conv), then
#             compute-sanitizer memcheck and racecheck on its --quick subset; kernels.log
#   test      Triton warm-up on all cores, then pytest tests -q (Triton autotuning off), with
#             tests-junit.xml; RK_TEST_ARGS adds arguments
#   bench     pytest benchmarks/ --benchmark-only: ours and cuDNN into bench-TAG.json, then
#             torch.compile (inductor, slow to compile) into bench-TAG-inductor.json
#   report    report.md and PNG charts from every bench-*.json in the folder
#   host      (only when named) host microseconds per op call and per eager ResNet-50 forward
#             at batch 1, per backend, Triton untuned; host-time.txt
#
# Options:
#   --out DIR   output folder (default: $OUT where set, else benchmarks/results/<gpu>-<date>)
#   --quick     benchmarks: ResNet-50 at batch 256 fp16 only, layers and end to end
#   -k EXPR     benchmarks: pytest -k selection, e.g. -k "test_model and resnet50"
#   --tag NAME  benchmarks: the JSON is bench-NAME.json (default: quick or all)
#   --limit S   seconds this whole call may take (default 570: the device's 10-minute
#               limit less a margin); tests and benchmarks stop in time, and the
#               benchmarks' JSON is still written
#
# Every stage's output goes to session.log in the folder as well as to the screen;
# the last lines printed are a table of the stages and the report's goals.
# Environment: PYTHON (default python3), MAX_JOBS (default 16), TORCH_CUDA_ARCH_LIST.
# Wheels in .whl/ (e.g. nvidia-cutlass for the CuTe headers) are installed first.

set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

PY=${PYTHON:-python3}
out="" quick="" kexpr="" tag="" limit=570
stages=()
while (($#)); do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        -k) kexpr=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --limit) limit=$2; shift 2 ;;
        versions | build | kernels | test | bench | report | host) stages+=("$1"); shift ;;
        -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_session.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
((${#stages[@]})) || stages=(versions build kernels test bench report)
tag=${tag:-$([[ -n $quick ]] && echo quick || echo all)}

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
if [[ -z $out ]]; then
    slug=$(echo "${gpu:-nogpu}" | tr '[:upper:]' '[:lower:]' | sed 's/^nvidia //; s/[^a-z0-9]\+/-/g; s/-$//')
    out=${OUT:-benchmarks/results/$slug-$(date -u +%Y-%m-%d)}
fi
mkdir -p "$out"
log=$out/session.log
start=$SECONDS
summary=() goals=""

left() { echo $((limit - (SECONDS - start))); }

# Runs "$@" under a deadline of $1 seconds: SIGINT first (pytest then stops cleanly
# and pytest-benchmark still writes its JSON), SIGKILL 30 s later.
deadline() {
    local seconds=$1
    shift
    if ((seconds < 10)); then
        echo "no time left for: $*" | tee -a "$log"
        return 124
    fi
    timeout -s INT -k 30 "$seconds" "$@"
}

stage() {
    local name=$1 t0=$SECONDS rc
    echo "=== $name ($(date -u +%H:%M:%S), $(left) s left) ===" | tee -a "$log"
    "stage_$name"
    rc=$?
    summary+=("$(printf '%-9s %-6s %4d s' "$name" "$([[ $rc == 0 ]] && echo ok || echo "rc=$rc")" $((SECONDS - t0)))")
    return $rc
}

stage_versions() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
        echo "nvcc: $(nvcc --version 2>/dev/null | tail -n1 || echo 'not found')"
        "$PY" -m resnet_kernels.bench versions 2>&1
    } | tee "$out/versions.txt" | tee -a "$log"
}

stage_build() {
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tee -a "$log"
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    if [[ ${RK_SKIP_BUILD:-0} != 1 ]]; then
        echo "building with TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a} MAX_JOBS=${MAX_JOBS:-16}" | tee -a "$log"
        TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a} MAX_JOBS=${MAX_JOBS:-16} RESNET_KERNELS_FORCE_CUDA=1 \
            deadline "$(($(left) - 60))" "$PY" -m pip install --no-build-isolation --no-deps -e . >>"$log" 2>&1
        local rc=$?
        tail -n 5 "$log"
        ((rc == 0)) || return $rc
    fi
    "$PY" -c "import resnet_kernels._C, torch; assert hasattr(torch.ops.resnet_kernels, 'conv_bn_act_cuda'); \
print('CUDA extension loads:', resnet_kernels._C.__file__)" 2>&1 | tee -a "$log"
}

stage_kernels() {
    # The standalone kernel test first: a wrong or hanging kernel shows up here in
    # seconds, with the sanitizers' verdict, before pytest runs hundreds of shapes.
    local build=build/cmake-gpu rc=0 archs=${CMAKE_CUDA_ARCHITECTURES:-}
    {
        cmake -S . -B "$build" ${archs:+-DCMAKE_CUDA_ARCHITECTURES=$archs} >/dev/null &&
            deadline "$(($(left) - 60))" cmake --build "$build" -j "${MAX_JOBS:-16}" >/dev/null
    } 2>&1 | tee -a "$out/kernels.log" "$log" >/dev/null || return 1
    for tool in ctest memcheck racecheck; do
        echo "--- $tool" | tee -a "$out/kernels.log" "$log"
        # The sanitizers slow every launch 10-100x: they run test_conv --quick (fp16, fewer
        # splits and epilogue variants, no large case; every kernel and path still runs).
        if [[ $tool == ctest ]]; then
            deadline 120 ctest --test-dir "$build" --output-on-failure
        else
            deadline "$([[ $tool == memcheck ]] && echo 150 || echo 120)" \
                compute-sanitizer --tool "$tool" --error-exitcode 3 "$build/test_conv" --quick
        fi 2>&1 | tail -n 40 | tee -a "$out/kernels.log" "$log"
        local step=${PIPESTATUS[0]}
        echo "$tool: rc=$step" | tee -a "$out/kernels.log" "$log"
        ((step == 0)) || rc=1
    done
    return $rc
}

# Compiles Triton kernels for the coming pytest run on every core (the
# autotuner would compile them one by one): resnet_kernels/triton/warmup.py.
# At most $1 seconds; a shape it does not reach is compiled by the run itself.
warm_triton() {
    local budget=$1
    shift
    ((budget >= 30)) || return 0
    deadline "$((budget + 60))" "$PY" -m resnet_kernels.triton.warmup --jobs "${MAX_JOBS:-16}" --budget-s "$budget" "$@" \
        2>&1 | tee -a "$log" | grep -v '^  failed: .*out of time' | tail -n 20
}

stage_test() {
    # Correctness over hundreds of layer shapes: one untimed Triton config per
    # shape (tuning each would take minutes); no -x, so one failure does not
    # hide the rest. RK_TEST_ARGS adds pytest arguments (e.g. a -k selection).
    # The GPU layer tests cover every ImageNet model's layers at batch 1 and 32
    # in fp32, fp16 and bf16: ~340 compiles, warmed first in parallel.
    RESNET_KERNELS_TRITON_AUTOTUNE=0 warm_triton "$(($(left) > 480 ? 180 : $(left) / 3))" \
        --models all --batches 1,32 --dtypes fp32,fp16,bf16
    # ... and every autotune candidate of ResNet-50 at batch 32 in fp16 (test_every_hopper_candidate_on_gpu).
    warm_triton "$(($(left) > 420 ? 60 : $(left) / 6))" --models resnet50 --batches 32 --dtypes fp16
    # The kernels' GPU tests first, so that a run cut short by the deadline has their verdict;
    # the rest (the random-call and over-2^31-element tests compile kernels nothing warmed) after.
    local first=(tests/test_cuda_*.py tests/test_triton_conv.py tests/test_models_gpu.py) rest=() f
    for f in tests/test_*.py; do
        [[ " ${first[*]} " == *" $f "* ]] || rest+=("$f")
    done
    RESNET_KERNELS_TRITON_AUTOTUNE=0 deadline "$(($(left) - 60))" "$PY" -m pytest "${first[@]}" "${rest[@]}" -q -rs \
        -p no:cacheprovider --junitxml="$out/tests-junit.xml" ${RK_TEST_ARGS:-} 2>&1 | tee -a "$log"
}

stage_bench() {
    # Every autotune candidate of the layers the run will meet (matrix.py: quick
    # is ResNet-50 at batch 256 in fp16), compiled in parallel before the run.
    if [[ -n $quick ]]; then
        warm_triton "$(($(left) > 540 ? 240 : $(left) / 3))" --models resnet50 --batches 256 --dtypes fp16
    else
        warm_triton "$(($(left) > 540 ? 240 : $(left) / 3))" \
            --models resnet18,resnet50,resnet101,resnet152,resnext50_32x4d --batches 1,32,256 --dtypes fp16,bf16
    fi
    if [[ -n $kexpr ]]; then
        bench_pass "$tag" "$kexpr"
        return
    fi
    # Ours and cuDNN at every point first; torch.compile (max-autotune spends
    # minutes compiling, ResNet-50 end to end most of all) with the time left.
    local rc=0
    bench_pass "$tag" "not inductor" || rc=1
    if (($(left) < 150)); then
        echo "no time left for the torch.compile (inductor) benchmarks: run again with -k inductor" | tee -a "$log"
        return 1
    fi
    bench_pass "$tag-inductor" "inductor" || rc=1
    return $rc
}

# One pytest-benchmark run: bench_pass TAG K_EXPRESSION -> bench-TAG.json.
# No new benchmark starts in the last 3 minutes: one may compile for that long.
bench_pass() {
    local args=(--benchmark-only --benchmark-json="$out/bench-$1.json" -q -rs -p no:cacheprovider
        --benchmark-columns=min,median,iqr,rounds --benchmark-sort=name
        --rk-budget-s "$(($(left) > 241 ? $(left) - 240 : 1))" -k "$2")
    [[ -n $quick ]] && args+=(--rk-quick)
    deadline "$(($(left) - 45))" "$PY" -m pytest benchmarks/ "${args[@]}" 2>&1 | tee -a "$log"
}

stage_host() {
    # Untuned Triton (one config per shape): the host path is the same, and tuning the 24 shapes
    # of a batch-1 forward would take minutes of compiling; those 24 compiled first on all cores.
    RESNET_KERNELS_TRITON_AUTOTUNE=0 warm_triton "$(($(left) > 300 ? 60 : $(left) / 5))" \
        --models resnet50 --batches 1 --dtypes fp16
    RESNET_KERNELS_TRITON_AUTOTUNE=0 deadline "$(($(left) > 270 ? 240 : $(left) - 30))" \
        "$PY" -m resnet_kernels.bench host-time 2>&1 | tee "$out/host-time.txt" | tee -a "$log"
}

stage_report() {
    if ! compgen -G "$out/bench-*.json" >/dev/null; then
        echo "no bench-*.json in $out: nothing to report" | tee -a "$log"
        return 1
    fi
    goals=$(deadline "$(($(left) - 5))" "$PY" -m resnet_kernels.bench report "$out"/bench-*.json --out "$out" 2>&1)
    local rc=$?
    echo "$goals" | tee -a "$log"
    return $rc
}

status=0
for s in "${stages[@]}"; do
    stage "$s" || status=1
done

echo
echo "=== $gpu, $(date -u +%Y-%m-%dT%H:%M:%SZ), results in $out ==="
printf '%s\n' "${summary[@]}"
[[ -n $goals ]] && echo "$goals"
exit $status

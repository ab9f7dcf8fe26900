#!/usr/bin/env bash
# GPU check of the opencl backend (issue 4), in two halves.
#
#   opencl/gpucheck.sh prepare   here (no GPU needed): builds the test
#                                binaries and frogbench with -tags opencl
#                                into .dev/, with the ICD loader
#                                (libOpenCL.so.1) and the reference vectors.
#   opencl/gpucheck.sh [tune]    on the GPU machine, from the repository
#                                root, with .dev/ carried: points the ICD
#                                loader at the NVIDIA driver, runs the tests
#                                on the GPU, then frogbench -backend opencl
#                                -r 64 and the device-resident benchmark.
#                                "tune" also prints the per-kernel
#                                profile of every shape with each
#                                blocking forced (BenchmarkProfileResNet18).
# Everything it prints is also written to $OUT/gpucheck.log when $OUT is set.
# It needs about 3-5 minutes on an H100 (kernels compile once per process).
set -u
cd "$(dirname "$0")/.."
DEV=.dev

if [ "${1:-}" = prepare ]; then
	set -e
	mkdir -p "$DEV/lib" "$DEV/reference"
	export CGO_CFLAGS="-O2 -DCL_TARGET_OPENCL_VERSION=120"
	go test -c -tags opencl -o "$DEV/opencl.test" ./opencl/
	go test -c -tags opencl -o "$DEV/frog.test" .
	go build -tags opencl -o "$DEV/frogbench" ./cmd/frogbench
	cp -L /usr/lib/x86_64-linux-gnu/libOpenCL.so.1 "$DEV/lib/"
	cp ../shared/reference/*.json "$DEV/reference/"
	ls -l "$DEV" "$DEV/lib"
	exit 0
fi

LOG=/dev/null
if [ -n "${OUT:-}" ]; then LOG="$OUT/gpucheck.log"; fi
exec > >(tee -a "$LOG") 2>&1

# The NVIDIA OpenCL driver through the ICD loader we carry.
mkdir -p /tmp/nvicd
echo libnvidia-opencl.so.1 > /tmp/nvicd/nvidia.icd
export OCL_ICD_VENDORS=/tmp/nvicd
if ! ldconfig -p | grep -q 'libOpenCL.so.1 '; then
	export LD_LIBRARY_PATH="$PWD/$DEV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export FROG_REFERENCE_DIR="$PWD/$DEV/reference"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null
status=0

echo "== opencl package tests (kernels against backend.CPU) on the GPU"
FROG_BACKEND=opencl timeout 300 "$DEV/opencl.test" -test.count=1 -test.v -test.run 'MatchesCPU|SplitAndReuse|ExtremeScales|Deterministic|DeviceJob|Faults' 2>&1 |
	grep -E '^(---|ok|PASS|FAIL|panic)|device |relative L2|fault' || true
FROG_BACKEND=opencl timeout 300 "$DEV/opencl.test" -test.count=1 >/dev/null 2>&1 || { echo "opencl tests FAILED"; status=1; }

echo "== reference harness and fallback tests on the GPU (FROG_BACKEND=opencl)"
FROG_BACKEND=opencl timeout 300 "$DEV/frog.test" -test.count=1 -test.v -test.run 'Reference|OpenCL' 2>&1 |
	grep -E '^(--- |ok|PASS|FAIL|panic)|auto:' || true
FROG_BACKEND=opencl timeout 300 "$DEV/frog.test" -test.count=1 -test.run 'Reference|OpenCL' >/dev/null 2>&1 || { echo "root tests FAILED"; status=1; }

echo "== frogbench -backend opencl -r 64 (host slices: includes the copies to the device)"
timeout 300 "$DEV/frogbench" -backend opencl -r 64 || status=1
echo "== frogbench -backend cpu -r 64 on this machine's CPU, for the ratio"
timeout 300 "$DEV/frogbench" -backend cpu -r 64 -reps 1 || true

echo "== device-resident benchmark, r = 64 (tensors already on the GPU)"
FROG_BENCH_R=64 timeout 300 "$DEV/opencl.test" -test.run '^$' -test.bench 'ResNet18$/' -test.benchtime 20x 2>&1 |
	grep -E 'Benchmark|device ' || status=1

if [ "${1:-}" = tune ]; then
	# Per-kernel device time of every shape with the blocking chosen by
	# Engine.plan and with each blocking forced (BenchmarkProfileResNet18), for
	# the default set and a wider one (the first one's RL serves all).
	for set in "" "128,128,16,8,8;64,128,16,8,8;128,64,16,8,4;64,64,16,8,4;64,64,16,4,4;64,64,32,4,4;64,64,32,8,8"; do
		echo "== profile, r = 64, tiles ${set:-default}"
		FROG_OPENCL_TILES=$set FROG_BENCH_R=64 timeout 120 "$DEV/opencl.test" -test.run '^$' -test.bench ProfileResNet18 -test.benchtime 1x -test.v 2>&1 |
			grep -E 'device|FAIL|rror|panic|:[0-9]+: ' | sed -E 's/.*bench_test.go:[0-9]+: //'
	done
fi
exit $status

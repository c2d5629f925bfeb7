#!/bin/sh
# Bounded fuzzing of the protocol readers under ASan+UBSan, as CI runs it
# (scripts/test.sh): the fuzz targets' own mutation main (no clang needed)
# over the committed seed corpora. Some 20 s on one core.
#   sh scripts/fuzz.sh [msgpack mutations] [json mutations]
# The mutation sequence is fixed unless SR_FUZZ_SEED is set, so a failure
# replays with the same command.
set -u
cd "$(dirname "$0")/.."
mp=${1:-1000000}
js=${2:-400000}
make -s fuzz-asan || exit 1
# msgpack-c reserves a container's announced size before its items arrive:
# let an absurd size fail the allocation (the reader's error path) instead
# of ASan stopping the run.
export ASAN_OPTIONS=abort_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=256
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rc=0
for t in "msgpack $mp" "json $js"; do
    set -- $t
    echo "-- fuzz_$1: $2 mutations"
    # ASan warns on each refused allocation; those are expected.
    if ! build-asan/fuzz/fuzz_"$1" -m "$2" csrc/test/fuzz_"$1"_corpus/* 2>/tmp/sr-fuzz.$$; then
        grep -v 'failed to allocate' /tmp/sr-fuzz.$$ | tail -n 40
        rc=1
    fi
done
rm -f /tmp/sr-fuzz.$$
exit $rc

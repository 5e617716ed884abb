#!/bin/sh
# CUDA compiler launcher of tw_cuda (CMakeLists.txt): runs the nvcc command line it is given,
# keeps the compiler's ptxas -v resource report as REPORT_DIR/<file>.ptxas.txt (for
# tests/test_cuda_static.c), passes every other message through to stderr, and deletes the -keep
# intermediates that nothing reads (preprocessed sources, cudafe output), keeping each target's
# .ptx, .cubin and the .fatbin.
# usage: tw_nvcc_report.sh REPORT_DIR NVCC ARGS...
dir=$1
shift
src=""
for a in "$@"; do
    case $a in *.cu) src=$a ;; esac
done
name=$(basename "$src" .cu)
tmp="$dir/$name.ptxas.txt.tmp"
"$@" 2>"$tmp"
rc=$?
# ptxas -v lines: "ptxas info : ..." and the indented "N bytes stack frame, ..." under them
grep -v -e '^ptxas info' -e '^ *[0-9]* bytes stack frame' "$tmp" >&2
if [ "$rc" -eq 0 ]; then
    mv -f "$tmp" "$dir/$name.ptxas.txt"
else
    rm -f "$tmp"
fi
rm -f "$dir/$name".*.ii "$dir/$name".cpp4.ii "$dir/$name".*cudafe1* "$dir/$name".fatbin.c \
    "$dir/$name".module_id
exit "$rc"

# Sourced by the benchmark scripts. `load_into_page_cache FILE` puts FILE in the page cache the same
# way for every run and every tool: its cached pages are dropped, then it is read through once, so the
# kernel's read-ahead lays it out (on kernels with large folios, mostly 2 MiB ones). A file the
# generator has just written sits in the cache as its writes left it, in 4 KiB pages on this
# machine's ext4, and reading it then costs vxtap 2-3% more CPU (docs/performance.md, eleventh pass).
load_into_page_cache() {
    sync -- "$1" # only clean pages can be dropped
    dd if="$1" iflag=nocache count=0 status=none
    cat -- "$1" > /dev/null
}

# shellcheck shell=bash disable=SC2154 # R[...] keys and the variables of scripts/bench
# Sourced by `scripts/bench` (not run on its own): long streams, LEVENTS (2000) small events
# LDELAY (2) ms apart — a long answer, faster than any model writes, so that a proxy's cost per
# event shows in the total — at c=1 (LSEQ sequential streams) and 200 concurrent; and the
# time-to-first-event / total table of every stream workload (the 20-event ones measured by
# scripts/bench itself). Uses scripts/bench's helpers and variables (stream_run, field, R, …).

streams_measure() {
    local t p model="bench/s${LEVENTS}x${LDELAY}"
    for t in d x n; do
        case $t in d) p=$UPORT ;; x) p=$XPORT ;; n) p=$NPORT ;; esac
        log "long streams through $t: $LSEQ of $LEVENTS events ${LDELAY} ms apart, then 200 at once"
        R[l1_$t]=$(stream_run "$p" --model "$model" --conns 1 --repeat "$LSEQ" --events "$LEVENTS" --delay-ms "$LDELAY")
        R[l200_$t]=$(stream_run "$p" --model "$model" --conns 200 --repeat 1 --events "$LEVENTS" --delay-ms "$LDELAY")
        sleep 1
    done
}

streams_table() {
    local k t name label s
    echo
    echo "Streams: time to first event (ttfb) and total, p50 and max over the streams, with the part over direct (ms)"
    printf "%-26s %-7s %10s %10s %10s %10s %10s %10s %9s\n" workload target "ttfb p50" "ttfb max" "+ttfb p50" "total p50" "total max" "+total p50" complete
    for k in "s:$SEQ x $SEVENTS ev ${SDELAY}ms, c=1" "c200:200 x $CEVENTS ev ${CDELAY}ms" \
        "l1:$LSEQ x $LEVENTS ev ${LDELAY}ms, c=1" "l200:200 x $LEVENTS ev ${LDELAY}ms"; do
        label=${k#*:}; k=${k%%:*}
        for t in d x n; do
            case $t in d) name=direct ;; x) name=nginx ;; n) name=noviqi ;; esac
            s=${R[${k}_$t]}
            printf "%-26s %-7s %10s %10s %10s %10s %10s %10s %9s\n" "$label" "$name" \
                "$(field "$s" ttfb_p50_ms)" "$(field "$s" ttfb_max_ms)" \
                "$(over "${R[${k}_d]}" "$s" ttfb_p50_ms)" \
                "$(field "$s" total_p50_ms)" "$(field "$s" total_max_ms)" \
                "$(over "${R[${k}_d]}" "$s" total_p50_ms)" \
                "$(field "$s" ok)/$(( $(field "$s" ok) + $(field "$s" fail) ))"
        done
    done
}

# over DIRECT_LINE LINE FIELD: LINE's FIELD minus direct's.
over() { awk -v a="$(field "$2" "$3")" -v b="$(field "$1" "$3")" 'BEGIN { printf "%.3f", a - b }'; }
# pct_over DIRECT_LINE LINE: total p50 over direct's, in percent.
pct_over() {
    awk -v a="$(field "$2" total_p50_ms)" -v b="$(field "$1" total_p50_ms)" \
        'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", (a - b) * 100 / b }'
}

streams_targets() {
    row "$LEVENTS-event stream total over direct, noviqi, c=1 (%)" "$(pct_over "${R[l1_d]}" "${R[l1_n]}")" "<=" 1
    row "$LEVENTS-event stream total over direct, noviqi, c=200 (%)" "$(pct_over "${R[l200_d]}" "${R[l200_n]}")" "<=" 1
    info "$LEVENTS-event stream total over direct, nginx, c=200 (%)" "$(pct_over "${R[l200_d]}" "${R[l200_x]}")"
    row "$LEVENTS-event streams complete at c=200, noviqi" "$(field "${R[l200_n]}" ok)" ">=" 200
}

# shellcheck shell=bash disable=SC2154 # R[...] keys and the variables of scripts/bench
# Sourced by `scripts/bench` (not run on its own): big bodies, as Claude Code and Codex send
# them (bodies and wrk scripts written by scripts/bench-bodies.py into $TMP). Each asks for a
# stream; the fake answers a short one at once, so wrk's latency is the body's way through.
#   cc83   Claude Code's recorded first turn to /v1/messages, native to the `anth` provider
#   cc2m   a 2 MiB session built from it, native
#   cc2mo  the same 2 MiB to a model on the `oai` provider: noviqi translates Messages→chat
#          (nginx cannot; compared with noviqi's own native pass-through of the same body)
#   codex  Codex's recorded Responses turn to a model on `anth`: noviqi translates
#          Responses→Messages; direct and nginx get the fake's native Responses answer
# Then 64 requests of 2 MiB at once (curl), held HOLD ms by the fake so that all are in
# flight together: the proxy's peak RSS, how many answered 200, how many the upstream held at
# once. Uses scripts/bench's helpers and variables (cell, poll_rss, stats, R, TMP, KEY, …).

BODY_WORKLOADS="cc83 cc2m codex"

body_path() { case $1 in codex) echo /v1/responses ;; *) echo "/v1/messages?beta=true" ;; esac; }
body_file() { case $1 in cc2mo) echo "$TMP/cc2m-oai" ;; *) echo "$TMP/$1" ;; esac; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# inflight NAME PORT PID BODY: 64 POSTs of BODY at once; R[NAME_peak] (KiB, the tree's
# largest VmRSS), R[NAME_base] (KiB before), R[NAME_ok] (200s), R[NAME_held] (held at once).
inflight() {
    local name=$1 port=$2 pid=$3 body=$4 i p
    stats >/dev/null # starts the upstream's held_max count afresh
    R[${name}_base]=$(tree_kb "$pid" VmRSS)
    echo 0 >"$TMP/peak"
    poll_rss "$pid" "$TMP/peak" &
    POLLER=$!
    rm -f "$TMP"/inflight.*
    for i in $(seq 64); do
        # No `Expect: 100-continue` (curl's habit past 1 MB): one request, as the SDKs send it.
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 60 -H "Expect:" \
            -H "Authorization: Bearer $KEY" -H "anthropic-version: 2023-06-01" \
            -H "content-type: application/json" --data-binary "@$body" \
            "http://127.0.0.1:$port/v1/messages" >"$TMP/inflight.$i" 2>/dev/null &
        CLIENTS+=("$!")
    done
    for p in "${CLIENTS[@]}"; do wait "$p" 2>/dev/null || true; done
    CLIENTS=()
    kill "$POLLER" 2>/dev/null || true; wait "$POLLER" 2>/dev/null || true; POLLER=""
    R[${name}_peak]=$(cat "$TMP/peak")
    R[${name}_ok]=$(cat "$TMP"/inflight.* | grep -c '^200$' || true)
    R[${name}_held]=$(stat_field "$(stats)" held_max)
}

bodies_measure() {
    local w c t port pid
    for w in $BODY_WORKLOADS cc2mo; do
        for c in 1 16; do
            log "big body $w at c=$c"
            for t in d x n; do
                [ "$w" = cc2mo ] && [ "$t" != n ] && continue
                case $t in d) port=$UPORT; pid=$UPID ;; x) port=$XPORT; pid=$XPID ;; n) port=$NPORT; pid=$NPID ;; esac
                cell "b_${w}_${c}_$t" "http://127.0.0.1:$port$(body_path "$w")" "$c" "$pid" "$(body_file "$w").lua"
            done
        done
    done
    log "64 requests of 2 MiB in flight at once: nginx, noviqi native, noviqi translated"
    inflight hold_x "$XPORT" "$XPID" "$TMP/cc2m-hold.json"
    sleep 1
    inflight hold_n "$NPORT" "$NPID" "$TMP/cc2m-hold.json"
    sleep 1
    inflight hold_no "$NPORT" "$NPID" "$TMP/cc2m-oai-hold.json"
}

# added W C T: T's p50 (or p99 with a 4th argument) minus direct's, for workload W at c=C
# (the translated 2 MiB body against direct's native one).
added() {
    local w=$1 base=$1 q=${4:-p50}
    [ "$w" = cc2mo ] && base=cc2m
    awk -v a="${R[b_${w}_$2_$3_$q]}" -v b="${R[b_${base}_$2_d_$q]}" 'BEGIN { printf "%.3f", a - b }'
}

bodies_table() {
    local w c t name label cpu a50 a99 size
    echo
    echo "Big bodies (each asks for a stream; the upstream answers a short one at once), wrk ${DUR}s per cell after ${WARM}s warm-up"
    printf "%-18s %-5s %-7s %8s %8s %8s %9s %9s %11s %7s\n" workload conc target "req/s" "p50 ms" "p99 ms" "+p50 ms" "+p99 ms" "cpu us/req" errors
    for w in $BODY_WORKLOADS cc2mo; do
        size=$(stat -c %s "$(body_file "$w").json")
        case $w in
            cc83) label="claude $((size / 1024))KB" ;;
            cc2m) label="claude $(mib "$size")MiB" ;;
            cc2mo) label="claude $(mib "$size")MiB>oai" ;;
            codex) label="codex $((size / 1024))KB>anth" ;;
        esac
        for c in 1 16; do
            for t in d x n; do
                [ "$w" = cc2mo ] && [ "$t" != n ] && continue
                case $t in d) name=direct ;; x) name=nginx ;; n) name=noviqi ;; esac
                a50=$(added "$w" "$c" "$t"); a99=$(added "$w" "$c" "$t" p99)
                cpu=${R[b_${w}_${c}_${t}_cpu]}
                [ "$t" = d ] && { cpu="(upstream ${cpu})"; a50="-"; a99="-"; }
                printf "%-18s %-5s %-7s %8s %8s %8s %9s %9s %11s %7s\n" "$label" "$c" "$name" \
                    "${R[b_${w}_${c}_${t}_rps]}" "${R[b_${w}_${c}_${t}_p50]}" "${R[b_${w}_${c}_${t}_p99]}" \
                    "$a50" "$a99" "$cpu" "${R[b_${w}_${c}_${t}_err]}"
            done
        done
    done
    echo "codex>anth: direct and nginx get the upstream's own Responses answer; noviqi translates to Messages and back."
    echo "claude 2MiB>oai: noviqi translates to chat completions and back; its +p50 is over direct's native 2 MiB."
    echo
    echo "64 requests of $(mib "$(stat -c %s "$TMP/cc2m-hold.json")") MiB at once, each held ${HOLD} ms by the upstream: peak RSS of the proxy's process tree"
    printf "%-24s %12s %12s %10s %14s\n" target "before MiB" "peak MiB" "200s" "held at once"
    for k in hold_x:nginx hold_n:"noviqi native" hold_no:"noviqi translated"; do
        name=${k#*:}; k=${k%%:*}
        printf "%-24s %12s %12s %10s %14s\n" "$name" "$(mib $((R[${k}_base] * 1024)))" \
            "$(mib $((R[${k}_peak] * 1024)))" "${R[${k}_ok]}/64" "${R[${k}_held]}"
    done
}

bodies_targets() {
    local w c size limit per
    for w in cc83 cc2m; do
        size=$(stat -c %s "$TMP/$w.json")
        case $w in cc83) label="$((size / 1024)) KB" ;; *) label="$(mib "$size") MiB" ;; esac
        row "$label native: added p50 noviqi/nginx, c=1" "$(ratio "$(added "$w" 1 n)" "$(added "$w" 1 x)")" "<=" 1.5
        for c in 1 16; do
            row "$label native: CPU per request noviqi/nginx, c=$c" "$(ratio "${R[b_${w}_${c}_n_cpu]}" "${R[b_${w}_${c}_x_cpu]}")" "<=" 1.5
        done
    done
    size=$(stat -c %s "$TMP/cc2m-oai.json")
    per=$(awk -v t="${R[b_cc2mo_1_n_p50]}" -v n="${R[b_cc2m_1_n_p50]}" -v s="$size" 'BEGIN { printf "%.2f", (t - n) / (s / 1048576) }')
    row "2 MiB translated: p50 over native, c=1 (ms per MiB)" "$per" "<=" 4
    limit=$(awk -v s="$(stat -c %s "$TMP/cc2m-hold.json")" 'BEGIN { printf "%.1f", 64 * s * 1.5 / 1048576 + 20 }')
    row "64 x 2 MiB in flight native: peak RSS noviqi (MiB)" "$(mib $((R[hold_n_peak] * 1024)))" "<=" "$limit"
    row "64 x 2 MiB in flight translated: peak RSS (MiB)" "$(mib $((R[hold_no_peak] * 1024)))" "<=" "$limit"
}

bodies_warnings() {
    local w c e=0 k
    for w in $BODY_WORKLOADS cc2mo; do
        for c in 1 16; do e=$((e + ${R[b_${w}_${c}_n_err]})); done
    done
    [ "$e" -gt 0 ] && echo "warning: noviqi answered $e non-2xx or socket errors during the big-body runs"
    for k in hold_n hold_no; do
        [ "${R[${k}_ok]}" -lt 64 ] && echo "warning: $k: noviqi answered ${R[${k}_ok]} of 64 in-flight requests with 200"
        [ "${R[${k}_held]}" -lt 64 ] && echo "warning: $k: only ${R[${k}_held]} of 64 requests were in flight at the upstream at once"
    done
    return 0
}

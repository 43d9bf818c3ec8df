# shellcheck shell=bash disable=SC2153,SC2154 # the variables of scripts/bench
# Sourced by `scripts/bench --cluster` (not run on its own): two noviqi instances sharing one
# redis-server against the single instance scripts/bench already started ($NPORT, $NPID), with
# the same config plus [cluster]. Uses scripts/bench's helpers (free_port, wait_http, load,
# tree_ticks, log) and variables (TMP, BIN, PIDS, KEY, WARM, DUR, HZ).

# --- redis-server: loopback, persistence off ---------------------------------------------
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" \
    >"$TMP/redis.log" 2>&1 &
RPID=$!; PIDS+=("$RPID")
for _ in $(seq 100); do
    [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] && break
    sleep 0.05
done

# --- two clustered instances: the same config, their own port and usage log ---------------
CPORTS=(); CPIDS=()
for i in 1 2; do
    port=$(free_port)
    mkdir -p "$TMP/cluster$i"
    cp "$TMP/noviqi/noviqi.key" "$TMP/cluster$i/"
    sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$TMP/noviqi/noviqi.toml" \
        >"$TMP/cluster$i/noviqi.toml"
    printf '\n[cluster]\nredis_url = "redis://127.0.0.1:%s/0"\n' "$RPORT" >>"$TMP/cluster$i/noviqi.toml"
    "$BIN/noviqi" serve --config "$TMP/cluster$i/noviqi.toml" 2>"$TMP/cluster$i.log" &
    CPIDS+=("$!"); PIDS+=("$!"); CPORTS+=("$port")
    wait_http "$port" /healthz
done

# --- c=1 latency: the single instance, then one clustered instance --------------------------
log "c=1: one instance alone, then one of two sharing Redis"
read -r S_RPS1 S_P50 S_P99 S_CPU1 S_ERR1 < <(load "$NPORT" 1 "$NPID")
read -r C_RPS1 C_P50 C_P99 C_CPU1 C_ERR1 < <(load "${CPORTS[0]}" 1 "${CPIDS[0]}")

# --- c=16: the single instance, then both clustered instances at c=8 each at once -----------
log "c=16: one instance alone, then two sharing Redis (c=8 each, at once)"
read -r S_RPS16 S_P5016 S_P9916 S_CPU16 S_ERR16 < <(load "$NPORT" 16 "$NPID")
r_before=$(tree_ticks "$RPID")
load "${CPORTS[0]}" 8 "${CPIDS[0]}" >"$TMP/c1.out" &
L1=$!
load "${CPORTS[1]}" 8 "${CPIDS[1]}" >"$TMP/c2.out" &
L2=$!
wait "$L1" "$L2"
r_after=$(tree_ticks "$RPID")
read -r A_RPS A_P50 A_P99 A_CPU A_ERR <"$TMP/c1.out"
read -r B_RPS B_P50 B_P99 B_CPU B_ERR <"$TMP/c2.out"
# Redis's CPU over the two runs (warm-up included, so an upper bound), per request measured.
R_CPU=$(awk -v t=$((r_after - r_before)) -v hz="$HZ" -v a="$A_RPS" -v b="$B_RPS" -v d="$DUR" \
    'BEGIN { r = (a + b) * d; if (r == 0) print "n/a"; else printf "%.2f", (t / hz) * 1e6 / r }')

# --- the table -------------------------------------------------------------------------------
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "Two noviqi instances sharing one redis-server vs one alone, one run of scripts/bench --cluster$( [ "$QUICK" = 1 ] && echo ' --quick') on $(nproc) cores ($CPU), $(date -u +%Y-%m-%d)"
echo "Non-streamed POST /v1/chat/completions, a key with rpm, tpm and a budget (per request: the admit round trip, and a settle sent without waiting)"
printf "%-28s %9s %8s %8s %11s %7s\n" setup "req/s" "p50 ms" "p99 ms" "cpu us/req" errors
printf "%-28s %9s %8s %8s %11s %7s\n" "c=1  alone" "$S_RPS1" "$S_P50" "$S_P99" "$S_CPU1" "$S_ERR1"
printf "%-28s %9s %8s %8s %11s %7s\n" "c=1  clustered (1 of 2)" "$C_RPS1" "$C_P50" "$C_P99" "$C_CPU1" "$C_ERR1"
printf "%-28s %9s %8s %8s %11s %7s\n" "c=16 alone" "$S_RPS16" "$S_P5016" "$S_P9916" "$S_CPU16" "$S_ERR16"
printf "%-28s %9s %8s %8s %11s %7s\n" "c=8  clustered instance 1" "$A_RPS" "$A_P50" "$A_P99" "$A_CPU" "$A_ERR"
printf "%-28s %9s %8s %8s %11s %7s\n" "c=8  clustered instance 2" "$B_RPS" "$B_P50" "$B_P99" "$B_CPU" "$B_ERR"
echo "redis-server CPU per request (both instances' requests): $R_CPU us"
echo
echo "Ratios and targets"
added=$(awk -v a="$C_P50" -v b="$S_P50" 'BEGIN { printf "%.3f", a - b }')
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN { print (v + 0 <= lim + 0) ? "met" : "NOT MET" }'; }
printf "%-52s %10s   target <= %-6s %s\n" "Added p50 at c=1, clustered - alone (ms)" "$added" 0.15 "$(verdict "$added" 0.15)"
for x in A B; do
    eval "cpu=\$${x}_CPU"
    r=$(awk -v a="$cpu" -v b="$S_CPU16" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }')
    printf "%-52s %10s   target <= %-6s %s\n" "CPU per request, clustered instance $x / alone" "$r" 1.3 "$(verdict "$r" 1.3)"
done

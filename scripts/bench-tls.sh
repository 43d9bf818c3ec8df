# shellcheck shell=bash disable=SC2154 # R[...] keys and the variables of scripts/bench
# Sourced by `scripts/bench` (not run on its own): TLS on both sides. The client talks TLS to
# the proxy (noviqi's [server.tls], rustls; nginx `listen … ssl`, OpenSSL) and the proxy talks
# TLS to a second fake upstream (`bench_upstream --tls-cert/--tls-key`, rustls), which both
# proxies verify against a CA made for the run (noviqi: the provider's `ca_file`; nginx:
# `proxy_ssl_trusted_certificate`, `proxy_ssl_verify on`, sessions reused, upstream
# keep-alive). Uses scripts/bench's helpers and variables (TMP, BIN, PIDS, KEY, R, …).
# Functions, called in this order: tls_upstream, tls_nginx_conf (inside nginx.conf),
# tls_noviqi, tls_measure, tls_table, tls_targets, tls_warnings.

# wait_https PORT PATH: like wait_http, trusting the run's CA.
wait_https() {
    for _ in $(seq 200); do
        curl -s -o /dev/null --cacert "$TMP/tls/ca.pem" "https://127.0.0.1:$1$2" && return 0
        sleep 0.05
    done
    log "TLS server on port $1 did not come up"; exit 1
}

# A CA and a leaf for 127.0.0.1 (IP SAN, and DNS localhost for nginx's name check), ECDSA
# P-256 as the big providers serve, valid two days (rcgen's when openssl is missing or
# BENCH_RCGEN is set); then the TLS fake upstream.
tls_upstream() {
    local d="$TMP/tls"
    mkdir -p "$d"
    if command -v openssl >/dev/null 2>&1 && [ -z "${BENCH_RCGEN:-}" ]; then
        tls_certs_openssl "$d"
    else
        "$BIN/examples/bench_certs" "$d"
    fi
    UTPORT=$(free_port)
    "$UPSTREAM_BIN" "127.0.0.1:$UTPORT" --chunks "$SEVENTS" --delay-ms "$SDELAY" \
        --tls-cert "$d/leaf.pem" --tls-key "$d/leaf.key" 2>"$TMP/upstream-tls.log" &
    UTPID=$!; PIDS+=("$UTPID")
    wait_https "$UTPORT" /stats
    XTPORT=$(free_port) # nginx's TLS port; tls_nginx_conf runs in a subshell
}

tls_certs_openssl() {
    local d=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=noviqi bench CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        2>"$d/openssl.log"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout "$d/leaf.key" -out "$d/leaf.csr" 2>>"$d/openssl.log"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$d/leaf.ext"
    openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/leaf.ext" -out "$d/leaf.pem" 2>>"$d/openssl.log"
}

# nginx's TLS server: the same proxy settings as the plain one, over TLS on both sides.
tls_nginx_conf() {
    cat <<CONF
    upstream bench_tls { server 127.0.0.1:$UTPORT; keepalive 256; }
    server {
        listen 127.0.0.1:$XTPORT ssl;
        ssl_certificate $TMP/tls/leaf.pem;
        ssl_certificate_key $TMP/tls/leaf.key;
        location / {
            proxy_pass https://bench_tls;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_ssl_trusted_certificate $TMP/tls/ca.pem;
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }
CONF
}

# A second noviqi: the same config and key, its own port and usage log, [server.tls], and a
# provider `tls` that reaches the TLS fake through the run's CA.
tls_noviqi() {
    local d="$TMP/noviqi-tls"
    NTPORT=$(free_port)
    mkdir -p "$d"
    cp "$TMP/noviqi/noviqi.key" "$d/"
    sed "s/^listen = .*/listen = \"127.0.0.1:$NTPORT\"/" "$TMP/noviqi/noviqi.toml" >"$d/noviqi.toml"
    cat >>"$d/noviqi.toml" <<TOML

[server.tls]
cert_file = "$TMP/tls/leaf.pem"
key_file = "$TMP/tls/leaf.key"

[[providers]]
name = "tls"
kind = "openai"
base_url = "https://127.0.0.1:$UTPORT/v1"
ca_file = "$TMP/tls/ca.pem"
timeout_secs = 60
TOML
    "$BIN/noviqi" check --config "$d/noviqi.toml" 2>"$TMP/check-tls.log" || { cat "$TMP/check-tls.log" >&2; exit 1; }
    "$BIN/noviqi" serve --config "$d/noviqi.toml" 2>"$TMP/noviqi-tls.log" &
    NTPID=$!; PIDS+=("$NTPID")
    wait_https "$NTPORT" /healthz
    # The small body, to the `tls` provider; and again with a new connection per request.
    sed 's/"model":"gpt-4o-mini"/"model":"tls\/gpt-4o-mini"/' "$TMP/post.lua" >"$TMP/post-tls.lua"
    cp "$TMP/post-tls.lua" "$TMP/post-tls-close.lua"
    echo 'wrk.headers["Connection"] = "close"' >>"$TMP/post-tls-close.lua"
}

tls_stats() { curl -s --cacert "$TMP/tls/ca.pem" "https://127.0.0.1:$UTPORT/stats"; }

# Each cell also counts the connections the proxy opened to the TLS upstream (warm-up
# included), to show whether it keeps them alive and reuses them.
tls_measure() {
    local t c port pid mode script s0 s1 k
    for mode in keep close; do
        script="$TMP/post-tls.lua"; [ "$mode" = close ] && script="$TMP/post-tls-close.lua"
        for c in 1 16; do
            [ "$mode" = close ] && [ "$c" = 1 ] && continue
            log "TLS both sides, $mode-alive client connections, c=$c"
            for t in d x n; do
                case $t in d) port=$UTPORT; pid=$UTPID ;; x) port=$XTPORT; pid=$XPID ;; n) port=$NTPORT; pid=$NTPID ;; esac
                k="tls_${mode}_${c}_$t"
                s0=$(tls_stats)
                cell "$k" "https://127.0.0.1:$port/v1/chat/completions" "$c" "$pid" "$script"
                s1=$(tls_stats)
                R[${k}_upconn]=$(( $(stat_field "$s1" connections) - $(stat_field "$s0" connections) ))
                R[${k}_upreq]=$(( $(stat_field "$s1" requests) - $(stat_field "$s0" requests) ))
            done
        done
    done
}

tls_table() {
    local t c mode name k added cpu up
    echo
    echo "TLS on both sides, small body, wrk ${DUR}s per cell after ${WARM}s warm-up (keep: kept-alive; close: a new client TLS connection per request)"
    printf "%-6s %-5s %-7s %9s %8s %8s %9s %11s %7s %18s\n" conn conc target "req/s" "p50 ms" "p99 ms" "+p50 ms" "cpu us/req" errors "upstream conns"
    for mode in keep close; do
        for c in 1 16; do
            [ "$mode" = close ] && [ "$c" = 1 ] && continue
            for t in d x n; do
                case $t in d) name=direct ;; x) name=nginx ;; n) name=noviqi ;; esac
                k="tls_${mode}_${c}"
                added=$(awk -v a="${R[${k}_${t}_p50]}" -v b="${R[${k}_d_p50]}" 'BEGIN { printf "%.3f", a - b }')
                cpu=${R[${k}_${t}_cpu]}
                up="${R[${k}_${t}_upconn]}/${R[${k}_${t}_upreq]} reqs"
                [ "$t" = d ] && { cpu="(upstream ${cpu})"; added="-"; up="-"; }
                printf "%-6s %-5s %-7s %9s %8s %8s %9s %11s %7s %18s\n" "$mode" "$c" "$name" "${R[${k}_${t}_rps]}" \
                    "${R[${k}_${t}_p50]}" "${R[${k}_${t}_p99]}" "$added" "$cpu" "${R[${k}_${t}_err]}" "$up"
            done
        done
    done
}

tls_targets() {
    row "TLS kept-alive: CPU per request noviqi/nginx, c=16" "$(ratio "${R[tls_keep_16_n_cpu]}" "${R[tls_keep_16_x_cpu]}")" "<=" 1.5
    info "TLS new connections: CPU per request noviqi/nginx" "$(ratio "${R[tls_close_16_n_cpu]}" "${R[tls_close_16_x_cpu]}")"
}

tls_warnings() {
    local e=$(( R[tls_keep_1_n_err] + R[tls_keep_16_n_err] + R[tls_close_16_n_err] ))
    if [ "$e" -gt 0 ]; then echo "warning: noviqi answered $e non-2xx or socket errors over TLS"; fi
}

#!/usr/bin/env bash
# check.sh: read-only report on the host settings that cost ringgate packets:
# the sysctl profile, limits at the configured scale (open files, ephemeral
# ports, buffers), io_uring, conntrack, and, given a NIC, its queues, rings,
# IRQ affinity and RPS/XPS. Changes nothing. Exits 1 when something would
# lose packets, unless --report.
set -euo pipefail

RG_PROG=${0##*/}
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# File descriptors ringgate needs beyond one per session: listen sockets, one
# ring per worker, the metrics endpoint's connections, logs, stdio.
FD_SLACK=1024
# The RX ring size worth having: deeper absorbs longer bursts; beyond ~4096
# descriptors the ring no longer fits in cache and latency grows.
RX_RING_WANT=4096

usage() {
    cat <<EOF
Usage: $RG_PROG [options]

Check this host for settings that lose packets at ringgate's scale. Prints
each setting's current and recommended value and FAIL (would lose packets),
WARN (costs CPU or latency, or needs a look) or ok. Changes nothing; root is
only needed to see conntrack's UDP entries.

Options (defaults are ringgate's):
  --workers N         worker threads (default: the number of --cpus)
  --max-sessions N    sessions per worker (default: 65536)
  --listen-port P     ringgate's UDP listen port (default: 19132)
  --socket-buffer B   SO_RCVBUF/SO_SNDBUF ringgate requests, in bytes
                      (default: 8388608)
  --cpus LIST         CPUs the workers run on, e.g. 0-7 or 2,4-6
                      (default: all online CPUs)
  --iface IFACE       also check this NIC (repeatable)
  --pid PID           check the open-files limit of this running process
                      instead of this shell's (ulimit -n)
  --conf FILE         the profile to compare with (default: $here/sysctl.conf)
  --report            print everything and exit 0 whatever is found (CI)
  -h, --help          this text

Exit status: 0 when nothing would lose packets (or with --report), 1 when
something would, 2 on a usage error.
EOF
}

workers=
max_sessions=65536
listen_port=19132
socket_buffer=8388608
cpus_arg=
ifaces=()
pid=
conf=$here/sysctl.conf
report=0
need_value() { (($1 >= 2)) || rg_usage_error "$2 needs a value"; }
while (($# > 0)); do
    case $1 in
    --report)
        report=1
        shift
        continue
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    --*=*)
        opt=${1%%=*} val=${1#*=}
        shift
        ;;
    --*)
        need_value $# "$1"
        opt=$1 val=$2
        shift 2
        ;;
    *) rg_usage_error "unknown argument: $1" ;;
    esac
    case $opt in
    --workers) workers=$val ;;
    --max-sessions) max_sessions=$val ;;
    --listen-port) listen_port=$val ;;
    --socket-buffer) socket_buffer=$val ;;
    --cpus) cpus_arg=$val ;;
    --iface) ifaces+=("$val") ;;
    --pid) pid=$val ;;
    --conf) conf=$val ;;
    *) rg_usage_error "unknown option: $opt" ;;
    esac
done

positive() { [[ $2 =~ ^[1-9][0-9]{0,9}$ ]] || rg_usage_error "$1 wants a positive number, got '$2'"; }
if [[ -n $cpus_arg ]]; then
    cpus=$(rg_cpus_expand "$cpus_arg") || rg_usage_error "--cpus: not a CPU list: $cpus_arg"
else
    cpus=$(rg_online_cpus)
fi
read -r -a cpu_array <<<"$cpus"
[[ -n $workers ]] || workers=${#cpu_array[@]}
positive --workers "$workers"
positive --max-sessions "$max_sessions"
positive --listen-port "$listen_port"
positive --socket-buffer "$socket_buffer"
((workers <= 65536)) || rg_usage_error "--workers $workers is not a plausible worker count"
((listen_port <= 65535)) || rg_usage_error "--listen-port must be at most 65535"
if [[ -n $pid ]]; then
    positive --pid "$pid"
    [[ -r /proc/$pid/limits ]] || rg_usage_error "--pid $pid: no such process (or /proc/$pid/limits unreadable)"
fi
rg_conf_read "$conf"

sessions=$((workers * max_sessions))
fds_needed=$((sessions + FD_SLACK))
fails=0
warns=0
fix_apply=0
fix_nofile=0
fix_nic=()

# row STATUS WHAT CURRENT WANT
row() {
    if [[ -n $4 ]]; then
        printf '%-4s  %-34s %-26s %s\n' "$1" "$2" "$3" "$4"
    else
        printf '%-4s  %-34s %s\n' "$1" "$2" "$3"
    fi
    case $1 in
    FAIL) fails=$((fails + 1)) ;;
    WARN) warns=$((warns + 1)) ;;
    esac
}
# note TEXT: an indented explanation under the row above.
note() { printf '      %s\n' "$@"; }
section() { printf '\n== %s\n' "$1"; }

# sysctl KEY: the key's value with blanks collapsed, or fail when absent.
sysctl_value() {
    local v
    v=$(rg_read "$(rg_key_path "$1")") || return 1
    rg_norm "$v"
}

why_of() {
    case $1 in
    net.core.rmem_max) echo "caps each socket's SO_RCVBUF: ringgate's receive queues are cut to this and overflow in bursts" ;;
    net.core.wmem_max) echo "caps SO_SNDBUF: with a full send buffer a datagram is dropped" ;;
    net.core.rmem_default | net.core.wmem_default) echo "buffer of sockets that set none; 208 KiB is about 100 datagrams" ;;
    net.core.netdev_max_backlog) echo "per-CPU input queue; when full, packets drop (softnet_stat column 2)" ;;
    net.core.netdev_budget | net.core.netdev_budget_usecs) echo "softirq work per round; too little and the backlog grows (softnet_stat column 3)" ;;
    net.ipv4.udp_mem) echo "memory of all UDP sockets, in pages; past 'pressure' sockets shrink to udp_rmem_min and drop" ;;
    net.ipv4.udp_rmem_min | net.ipv4.udp_wmem_min) echo "what each socket keeps under memory pressure; 4096 is one or two datagrams" ;;
    net.ipv4.ip_local_port_range) echo "each session holds an ephemeral port" ;;
    fs.file-max) echo "open files system-wide; each session holds a socket" ;;
    fs.nr_open) echo "ceiling for any process's open-files limit (LimitNOFILE)" ;;
    kernel.io_uring_disabled) echo "ringgate runs on io_uring" ;;
    *) echo "see $conf" ;;
    esac
}

# Keys whose shortfall costs CPU or latency first; everything else in the
# profile loses packets when short.
severity_of() {
    case $1 in
    net.core.netdev_budget | net.core.netdev_budget_usecs | net.core.busy_read | net.core.busy_poll) echo WARN ;;
    *) echo FAIL ;;
    esac
}

want_of() {
    case $(rg_mode "$1") in
    min) printf '>= %s' "$2" ;;
    max) printf '<= %s' "$2" ;;
    range) printf 'covers %s' "$2" ;;
    *) printf '%s' "$2" ;;
    esac
}

printf 'ringgate host check: %d worker(s) x %d sessions = %d sessions, listen port %d,\n' \
    "$workers" "$max_sessions" "$sessions" "$listen_port"
printf 'socket buffers %d bytes, worker CPUs %s. Read-only: nothing is changed.\n' "$socket_buffer" "$cpus"
if ! rg_is_root; then
    echo "Not root: conntrack's UDP entries cannot be counted."
fi

# --- The profile -----------------------------------------------------------

section "sysctls (recommended: $conf)"
for key in "${RG_CONF_KEYS[@]}"; do
    rec=${RG_CONF[$key]}
    if ! cur=$(sysctl_value "$key"); then
        row "-" "$key" "(not on this kernel)" "$(want_of "$key" "$rec")"
        continue
    fi
    if rg_fits "$key" "$cur" "$rec"; then
        row ok "$key" "$cur" "$(want_of "$key" "$rec")"
    else
        row "$(severity_of "$key")" "$key" "$cur" "$(want_of "$key" "$rec")"
        note "$(why_of "$key")"
        fix_apply=1
    fi
done
for key in net.core.busy_read net.core.busy_poll; do
    if cur=$(sysctl_value "$key") && [[ $cur != 0 ]]; then
        row WARN "$key" "$cur" "0"
        note "busy polling spins a CPU in read()/poll(); io_uring does not use it, ringgate's workers need the CPU"
    fi
done

# --- Limits at the configured scale --------------------------------------------

section "scale: $workers worker(s) x $max_sessions sessions"

if [[ -n $pid ]]; then
    read -r soft hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$pid/limits")
    nofile_what="open files (pid $pid)"
else
    soft=$(ulimit -Sn) hard=$(ulimit -Hn)
    nofile_what="open files (ulimit -n)"
fi
if [[ $soft == unlimited ]] || rg_ge "$soft" "$fds_needed"; then
    row ok "$nofile_what" "$soft" ">= $fds_needed"
else
    row FAIL "$nofile_what" "$soft" ">= $fds_needed"
    note "each session holds a socket: $sessions sessions + $FD_SLACK for listen sockets, rings, metrics, logs;" \
        "past the limit new sessions fail to open and their packets drop."
    if [[ $hard == unlimited ]] || rg_ge "$hard" "$fds_needed"; then
        note "The hard limit ($hard) allows it: raise the soft limit (LimitNOFILE= in tuning/ringgate.service, or ulimit -n $fds_needed)."
    else
        note "Raise the limit: LimitNOFILE=$fds_needed or more in tuning/ringgate.service (hard limit now $hard)."
    fi
    fix_nofile=1
fi

if nr_open=$(sysctl_value fs.nr_open); then
    if rg_ge "$nr_open" "$fds_needed"; then
        row ok "fs.nr_open" "$nr_open" ">= $fds_needed"
    else
        row FAIL "fs.nr_open" "$nr_open" ">= $fds_needed"
        note "no process may have more open files than this, whatever LimitNOFILE says: sysctl -w fs.nr_open=$fds_needed"
    fi
fi

if file_max=$(sysctl_value fs.file-max); then
    in_use=$(awk '{ print $1 }' /proc/sys/fs/file-nr 2>/dev/null || echo 0)
    want=$((fds_needed + in_use))
    if rg_ge "$file_max" "$want"; then
        row ok "fs.file-max" "$file_max" ">= $want"
    else
        row FAIL "fs.file-max" "$file_max" ">= $want"
        note "ringgate's $fds_needed plus the $in_use files open now must fit: sysctl -w fs.file-max=$((want * 2))"
    fi
fi

for key in net.core.rmem_max net.core.wmem_max; do
    cur=$(sysctl_value "$key") || continue
    if rg_ge "$cur" "$socket_buffer"; then
        row ok "$key" "$cur" ">= $socket_buffer (socket buffer)"
    else
        row FAIL "$key" "$cur" ">= $socket_buffer (socket buffer)"
        note "ringgate asks for $socket_buffer bytes and gets $cur, unless it runs with CAP_NET_ADMIN (SO_RCVBUFFORCE/SO_SNDBUFFORCE)."
        fix_apply=1
    fi
done

if udp_mem=$(sysctl_value net.ipv4.udp_mem); then
    read -r _ pressure _ <<<"$udp_mem"
    page=$(getconf PAGESIZE 2>/dev/null || echo 4096)
    # Receive and send buffer per worker socket, each doubled by the kernel.
    want=$((workers * socket_buffer * 4 / page))
    if rg_ge "$pressure" "$want"; then
        row ok "net.ipv4.udp_mem (pressure)" "$pressure pages" ">= $want pages"
    else
        row FAIL "net.ipv4.udp_mem (pressure)" "$pressure pages" ">= $want pages"
        note "$workers full send and receive buffers of $socket_buffer bytes push UDP into memory pressure, where sockets drop."
        fix_apply=1
    fi
fi

if range=$(sysctl_value net.ipv4.ip_local_port_range); then
    read -r lo hi <<<"$range"
    width=$((hi - lo + 1))
    read -r plo phi <<<"${RG_CONF[net.ipv4.ip_local_port_range]:-10000 65535}"
    pwidth=$((phi - plo + 1))
    if ((width >= sessions)); then
        row ok "ephemeral ports" "$width ($lo-$hi)" ">= $sessions"
    elif ((width < pwidth)); then
        row FAIL "ephemeral ports" "$width ($lo-$hi)" ">= $sessions"
        note "each session holds an ephemeral port: sessions past $width fail to open. tuning/apply.sh widens the range to $plo-$phi."
        fix_apply=1
    else
        row WARN "ephemeral ports" "$width ($lo-$hi)" ">= $sessions"
        note "each session holds an ephemeral port and one source address has at most 64512 (1024-65535):" \
            "sessions past $width fail to open. Lower --max-sessions, or give ringgate more source addresses."
    fi
    if ((listen_port >= lo && listen_port <= hi)); then
        reserved=$(sysctl_value net.ipv4.ip_local_reserved_ports || true)
        if [[ " $(rg_cpus_expand "${reserved// /}" 2>/dev/null || true) " == *" $listen_port "* ]]; then
            row ok "listen port $listen_port" "reserved" "reserved or outside $lo-$hi"
        else
            row WARN "listen port $listen_port" "inside $lo-$hi" "reserved or outside $lo-$hi"
            note "an outgoing socket may take port $listen_port before ringgate binds it. Reserve it:" \
                "sysctl -w net.ipv4.ip_local_reserved_ports=$listen_port${reserved:+,$reserved}"
        fi
    fi
fi

# --- io_uring --------------------------------------------------------------

section "io_uring"
if ! disabled=$(sysctl_value kernel.io_uring_disabled); then
    row ok "kernel.io_uring_disabled" "(not on this kernel)" "0"
    note "kernels before 6.6 have no switch; io_uring is available unless a seccomp filter blocks it"
else
    case $disabled in
    0) row ok "kernel.io_uring_disabled" "0" "0" ;;
    1)
        group=$(sysctl_value kernel.io_uring_group || echo -1)
        row WARN "kernel.io_uring_disabled" "1" "0"
        note "only CAP_SYS_ADMIN and members of group $group (kernel.io_uring_group) may use io_uring;" \
            "put ringgate's user in that group, or set 0 (tuning/apply.sh). Without it ringgate cannot start."
        fix_apply=1
        ;;
    *)
        row FAIL "kernel.io_uring_disabled" "$disabled" "0"
        note "io_uring is disabled for every process: ringgate cannot start. tuning/apply.sh sets 0."
        fix_apply=1
        ;;
    esac
fi
seccomp=$(awk '/^Seccomp:/ { print $2 }' /proc/self/status 2>/dev/null || true)
if [[ $seccomp == 2 ]]; then
    row WARN "seccomp" "filtered" "allows io_uring_*"
    note "this shell runs under a seccomp filter (a container?). If ringgate runs in the same sandbox, its profile must" \
        "allow io_uring_setup, io_uring_enter and io_uring_register (the defaults of Docker 25+ and containerd 2 block them)."
fi

# --- conntrack -------------------------------------------------------------

section "conntrack"
if ! ct_max=$(sysctl_value net.netfilter.nf_conntrack_max); then
    row ok "nf_conntrack" "not loaded" "not loaded, or notrack"
else
    ct_count=$(sysctl_value net.netfilter.nf_conntrack_count || echo 0)
    udp_flows=unknown
    if [[ -r /proc/net/nf_conntrack ]]; then
        udp_flows=$(awk '$3 == "udp"' /proc/net/nf_conntrack 2>/dev/null | wc -l)
    fi
    notrack=0
    if command -v nft >/dev/null 2>&1 &&
        nft list ruleset 2>/dev/null | grep -E "notrack" | grep -qw -- "$listen_port"; then
        notrack=1
    fi
    if command -v iptables-save >/dev/null 2>&1 &&
        iptables-save -t raw 2>/dev/null | grep -E -- "-j (NOTRACK|CT --notrack)" | grep -qw -- "$listen_port"; then
        notrack=1
    fi
    ct_need=$((2 * sessions))
    tracking=0
    if [[ $ct_count != 0 || ($udp_flows != unknown && $udp_flows != 0) ]]; then tracking=1; fi
    current="loaded, $ct_count flows ($udp_flows UDP)"
    if ((notrack)); then
        row ok "nf_conntrack" "$current" "notrack for port $listen_port"
        note "found a notrack rule for port $listen_port. The backend side (sessions towards the game servers) is tracked" \
            "unless exempted too; each tracked session takes 2 of nf_conntrack_max=$ct_max entries."
    elif ((tracking)) && ! rg_ge "$ct_max" "$ct_need"; then
        row FAIL "nf_conntrack" "$current" "notrack, or max >= $ct_need"
        note "every UDP flow is tracked, 2 entries per session, and nf_conntrack_max=$ct_max is below $ct_need:" \
            "when the table is full the kernel drops packets ('nf_conntrack: table full' in dmesg)."
    else
        row WARN "nf_conntrack" "$current" "notrack for port $listen_port"
        if ((!tracking)); then
            note "loaded but tracking nothing now: it tracks once a firewall rule uses it (ct state, NAT, iptables' conntrack match)."
        fi
        note "when it tracks, every UDP packet costs a table lookup and every session 2 of nf_conntrack_max=$ct_max entries," \
            "kept nf_conntrack_udp_timeout_stream=$(sysctl_value net.netfilter.nf_conntrack_udp_timeout_stream || echo '?')s after the session's last packet."
    fi
    note "Exempt ringgate's port from tracking (nftables):" \
        "  nft add table inet ringgate" \
        "  nft add chain inet ringgate pre '{ type filter hook prerouting priority raw; }'" \
        "  nft add chain inet ringgate out '{ type filter hook output priority raw; }'" \
        "  nft add rule inet ringgate pre udp dport $listen_port notrack" \
        "  nft add rule inet ringgate out udp sport $listen_port notrack" \
        "or (iptables; repeat with ip6tables):" \
        "  iptables -t raw -A PREROUTING -p udp --dport $listen_port -j CT --notrack" \
        "  iptables -t raw -A OUTPUT -p udp --sport $listen_port -j CT --notrack" \
        "Exempt the backend side the same way by the game servers' port (out: dport, pre: sport)." \
        "A stateful firewall must then accept these packets: 'ct state untracked accept'."
fi

# --- NICs ------------------------------------------------------------------

# ethtool_field OUTPUT SECTION KEY: the value of "KEY:" under "SECTION" in
# ethtool -l/-g output (SECTION: max or cur); empty when n/a or absent.
ethtool_field() {
    awk -v want_s="$2" -v want_k="$3" '
        /^Pre-set maximums/ { s = "max"; next }
        /^Current hardware settings/ { s = "cur"; next }
        s == want_s && $0 ~ "^" want_k ":" { v = $2 }
        END { if (v ~ /^[0-9]+$/) print v }' <<<"$1"
}

check_iface() {
    local iface=$1 out max cur qmax qcur want irq q name aff acpus used=() outside=0 nirq=0
    local d rxq=() txq=() mask rps_on=0 xps_on=0 masks=() xps_seen=0 counters c v total=0
    local ncpus=${#cpu_array[@]}
    section "NIC $iface (worker CPUs: $cpus)"
    if [[ ! -e /sys/class/net/$iface ]]; then
        row FAIL "$iface" "no such interface" "an existing NIC"
        return
    fi

    if ! command -v ethtool >/dev/null 2>&1; then
        row WARN "ethtool" "not installed" "installed"
        note "queue counts and ring sizes need ethtool: apt-get install ethtool"
    fi

    # Queues.
    if out=$(ethtool -l "$iface" 2>/dev/null); then
        qmax=$(ethtool_field "$out" max Combined)
        qcur=$(ethtool_field "$out" cur Combined)
        if [[ -z $qcur || $qcur == 0 ]]; then
            qmax=$(ethtool_field "$out" max RX)
            qcur=$(ethtool_field "$out" cur RX)
        fi
    fi
    mapfile -t rxq < <(rg_queue_dirs "$iface" rx)
    mapfile -t txq < <(rg_queue_dirs "$iface" tx)
    if [[ -n ${qcur:-} ]]; then
        want=$ncpus
        [[ -n ${qmax:-} ]] && ((qmax < want)) && want=$qmax
        if ((qcur >= want)); then
            row ok "queues (ethtool -l)" "$qcur of max ${qmax:-?}" ">= $want"
        else
            row WARN "queues (ethtool -l)" "$qcur of max ${qmax:-?}" ">= $want"
            note "fewer queues than worker CPUs: some CPUs take no receive interrupts. ethtool -L $iface combined $want" \
                "(or rx/tx $want on NICs without combined channels)."
        fi
    else
        row "-" "queues (ethtool -l)" "${#rxq[@]} rx, ${#txq[@]} tx" "(ethtool -l unsupported)"
    fi

    # Rings.
    if out=$(ethtool -g "$iface" 2>/dev/null); then
        max=$(ethtool_field "$out" max RX)
        cur=$(ethtool_field "$out" cur RX)
        if [[ -n $cur && -n $max ]]; then
            want=$((max < RX_RING_WANT ? max : RX_RING_WANT))
            if ((cur >= want)); then
                row ok "RX ring (ethtool -g)" "$cur of max $max" ">= $want"
            else
                row FAIL "RX ring (ethtool -g)" "$cur of max $max" ">= $want"
                note "the NIC drops what does not fit in the ring during a burst (rx_missed_errors):" \
                    "ethtool -G $iface rx $want (many drivers reset the link for a moment)."
                fix_nic+=("$iface")
            fi
        fi
        max=$(ethtool_field "$out" max TX)
        cur=$(ethtool_field "$out" cur TX)
        if [[ -n $cur && -n $max ]]; then
            want=$((max < RX_RING_WANT ? max : RX_RING_WANT))
            if ((cur >= want)); then
                row ok "TX ring (ethtool -g)" "$cur of max $max" ">= $want"
            else
                row WARN "TX ring (ethtool -g)" "$cur of max $max" ">= $want"
                note "a short TX ring backs up into the qdisc and the socket's send buffer: ethtool -G $iface tx $want"
            fi
        fi
    else
        row "-" "rings (ethtool -g)" "(unsupported)" ""
    fi

    # IRQ affinity.
    while read -r irq q name; do
        nirq=$((nirq + 1))
        aff=$(rg_read "/proc/irq/$irq/effective_affinity_list" || rg_read "/proc/irq/$irq/smp_affinity_list" || echo "?")
        acpus=$(rg_list_cpus "$aff")
        used+=("$acpus")
        if [[ $aff != "?" ]] && rg_cpus_subset "$acpus" "$cpus"; then
            row ok "IRQ $irq $name" "CPU $aff" "a worker CPU"
        else
            row WARN "IRQ $irq $name" "CPU $aff" "a worker CPU"
            outside=1
        fi
    done < <(rg_iface_irqs "$iface")
    if ((nirq == 0)); then
        row "-" "IRQs" "none (virtual device)" ""
    else
        if ((outside)); then
            note "packets of these queues are processed outside ringgate's CPUs, then handed across: run tuning/nic.sh $iface"
            fix_nic+=("$iface")
        fi
        local distinct
        distinct=$(printf '%s\n' "${used[@]}" | sort -u | wc -l)
        want=$((nirq < ncpus ? nirq : ncpus))
        if ((distinct < want)); then
            row WARN "IRQ spread" "$distinct distinct CPU set(s)" "$want"
            note "several queues interrupt the same CPU while others idle: run tuning/nic.sh $iface"
            fix_nic+=("$iface")
        fi
        if rg_irqbalance_running; then
            row WARN "irqbalance" "running" "stopped, or banned from worker CPUs"
            note "irqbalance moves IRQs on its own and undoes nic.sh: systemctl disable --now irqbalance," \
                "or IRQBALANCE_BANNED_CPULIST=$cpus in /etc/default/irqbalance."
        fi
    fi

    # RPS.
    for d in "${rxq[@]}"; do
        mask=$(rg_read "$d/rps_cpus") || continue
        masks+=("${d##*/}=$mask")
        [[ -n $(rg_mask_cpus "$mask") ]] && rps_on=$((rps_on + 1))
    done
    if ((${#masks[@]} == 0)); then
        row "-" "RPS" "(no rps_cpus: kernel without RPS)" ""
    elif ((${#rxq[@]} < ncpus && rps_on == 0)); then
        row WARN "RPS" "off (${masks[*]})" "on: ${#rxq[@]} RX queue(s), $ncpus CPUs"
        note "with fewer RX queues than worker CPUs and RPS off, receive processing stays on ${#rxq[@]} CPU(s): run tuning/nic.sh $iface"
        fix_nic+=("$iface")
    else
        row ok "RPS" "on for $rps_on of ${#rxq[@]} RX queue(s)" "on when RX queues < CPUs"
        if ((${#masks[@]} <= 8)); then note "${masks[*]}"; fi
    fi

    # XPS.
    masks=()
    for d in "${txq[@]}"; do
        mask=$(rg_read "$d/xps_cpus") || continue
        xps_seen=$((xps_seen + 1))
        masks+=("${d##*/}=$mask")
        [[ -n $(rg_mask_cpus "$mask") ]] && xps_on=$((xps_on + 1))
    done
    if ((xps_seen == 0)); then
        row "-" "XPS" "(no xps_cpus: single TX queue?)" ""
    elif ((${#txq[@]} > 1 && xps_on == 0)); then
        row WARN "XPS" "off (${masks[*]})" "each worker CPU on its own TX queue"
        note "without XPS the TX queue is picked by hash and workers contend for queue locks: run tuning/nic.sh $iface"
        fix_nic+=("$iface")
    else
        row ok "XPS" "set on $xps_on of ${#txq[@]} TX queue(s)" "each worker CPU on its own TX queue"
        if ((${#masks[@]} <= 8)); then note "${masks[*]}"; fi
    fi

    # Drops the NIC has counted since boot.
    counters=()
    for c in rx_dropped rx_missed_errors rx_fifo_errors rx_over_errors; do
        v=$(rg_read "/sys/class/net/$iface/statistics/$c" || echo 0)
        [[ $v =~ ^[0-9]+$ ]] || v=0
        counters+=("$c=$v")
        total=$((total + v))
    done
    if ((total > 0)); then
        row WARN "NIC drop counters" "$total since boot" "0"
        note "${counters[*]} (ethtool -S $iface has the driver's detail)"
    else
        row ok "NIC drop counters" "0 since boot" "0"
    fi
}

for iface in "${ifaces[@]}"; do
    check_iface "$iface"
done

# --- What the kernel has already dropped -------------------------------------

section "evidence: drops counted since boot (this network namespace)"
snmp=$(awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) n[i] = $i; h = 1 } else { for (i = 2; i <= NF; i++) print n[i], $i } }' /proc/net/snmp 2>/dev/null || true)
udp_counter() { awk -v k="$1" '$1 == k { print $2 }' <<<"$snmp"; }
for c in RcvbufErrors SndbufErrors MemErrors; do
    v=$(udp_counter "$c")
    [[ -n $v ]] || continue
    if [[ $v == 0 ]]; then
        row ok "UDP $c" "0" "0"
    else
        row WARN "UDP $c" "$v" "0"
        case $c in
        RcvbufErrors) note "datagrams dropped on full receive buffers: net.core.rmem_max, ringgate's --socket-buffer" ;;
        SndbufErrors) note "sends refused on full send buffers: net.core.wmem_max" ;;
        MemErrors) note "drops under UDP memory pressure: net.ipv4.udp_mem, udp_rmem_min" ;;
        esac
    fi
done
if [[ -r /proc/net/softnet_stat ]]; then
    # One line per CPU, hex: processed, dropped, time_squeeze, ...
    dropped=0 squeezed=0
    while read -r _ d sq _; do
        [[ $d =~ ^[0-9a-fA-F]+$ && $sq =~ ^[0-9a-fA-F]+$ ]] || continue
        dropped=$((dropped + 16#$d)) squeezed=$((squeezed + 16#$sq))
    done </proc/net/softnet_stat
    if ((dropped == 0)); then
        row ok "softnet dropped" "0" "0"
    else
        row WARN "softnet dropped" "$dropped" "0"
        note "per-CPU backlog overflowed: net.core.netdev_max_backlog"
    fi
    if ((squeezed == 0)); then
        row ok "softnet time_squeeze" "0" "0"
    else
        row WARN "softnet time_squeeze" "$squeezed" "low"
        note "softirq rounds ran out of budget: net.core.netdev_budget, netdev_budget_usecs"
    fi
fi

# --- Summary ---------------------------------------------------------------

section "summary"
printf '%d FAIL, %d WARN.\n' "$fails" "$warns"
if ((fix_apply)); then
    printf '  sysctls:     sudo %s/apply.sh   (preview: --dry-run; undo: sudo %s/revert.sh)\n' "$here" "$here"
fi
if ((fix_nofile)); then
    printf '  open files:  LimitNOFILE= in %s/ringgate.service, or ulimit -n %d before starting ringgate\n' "$here" "$fds_needed"
fi
if ((${#fix_nic[@]} > 0)); then
    for iface in $(printf '%s\n' "${fix_nic[@]}" | sort -u); do
        printf '  NIC:         sudo %s/nic.sh --cpus %s %s   (undo: sudo %s/revert.sh)\n' "$here" "$(printf '%s' "$cpus" | tr ' ' ',')" "$iface" "$here"
    done
fi
if ((report)); then
    echo "Report mode: exit status 0 whatever was found."
    exit 0
fi
((fails == 0))

#!/usr/bin/env python3
"""Turns one strace capture of `tc` into an annotated fixture (see capture-tc-fixtures).

Output: '#' header lines, then the netlink message body (the tcmsg and its attributes,
without the 16-byte nlmsghdr whose seq/pid vary) as hex, one field per line, each with a
'# comment' naming the field and its value. Long tables are wrapped at 16 bytes a line.
"""
import re
import struct
import sys

path, name, command, version = sys.argv[1:5]

# Collect the bytes of every sendmsg, in order.
messages, current = [], None
for line in open(path):
    line = re.sub(r"^\d+ +", "", line.rstrip("\n"))
    if line.startswith("sendmsg("):
        current = bytearray()
        messages.append(current)
        continue
    m = re.match(r"^ \| [0-9a-f]{5}  ((?:[0-9a-f]{2} {1,2})+)", line)
    if m and current is not None:
        current.extend(bytes.fromhex(m.group(1).replace(" ", "")))

RTM = {36: "RTM_NEWQDISC", 37: "RTM_DELQDISC", 40: "RTM_NEWTCLASS", 41: "RTM_DELTCLASS",
       44: "RTM_NEWTFILTER", 45: "RTM_DELTFILTER"}
tc_msgs = [m for m in messages if len(m) >= 16 and struct.unpack_from("<H", m, 4)[0] in RTM]
if not tc_msgs:
    sys.exit(f"{name}: no tc request found in {path}")
msg = bytes(tc_msgs[-1])
length, mtype, flags = struct.unpack_from("<IHH", msg, 0)
msg = msg[:length]
FLAGS = [(1, "REQUEST"), (4, "ACK"), (0x100, "REPLACE"), (0x200, "EXCL"), (0x400, "CREATE"),
         (0x800, "APPEND")]
flag_names = "|".join(n for b, n in FLAGS if flags & b)

out = []
def emit(data, comment, depth=0):
    data = bytes(data)
    pad = "  " * depth
    chunks = [data[i:i + 16] for i in range(0, len(data), 16)] or [b""]
    for i, chunk in enumerate(chunks):
        hexs = " ".join(f"{b:02x}" for b in chunk)
        out.append(f"{hexs:<48}  # {pad}{comment}" if i == 0 else hexs)

def handle(v):
    return f"{v >> 16:x}:{v & 0xffff:x}"

def pct(v):
    return f"{v} (= {v / 0xffffffff * 100:.6g}% of u32::MAX)"

def ratespec(data, label, depth):
    cell_log, linklayer, overhead, cell_align, mpu, rate = struct.unpack_from("<BBHhHI", data)
    emit(data[0:1], f"{label}.cell_log {cell_log}", depth)
    emit(data[1:2], f"{label}.linklayer {linklayer} (1 = ethernet)", depth)
    emit(data[2:4], f"{label}.overhead {overhead}", depth)
    emit(data[4:6], f"{label}.cell_align {cell_align}", depth)
    emit(data[6:8], f"{label}.mpu {mpu}", depth)
    emit(data[8:12], f"{label}.rate {rate} bytes/s", depth)

def u32_fields(data, names, depth, fmt=None):
    for i, n in enumerate(names):
        (v,) = struct.unpack_from("<I", data, 4 * i)
        emit(data[4 * i:4 * i + 4], f"{n} {fmt(v) if fmt else v}", depth)

def struct_netem_qopt(d, depth):
    u32_fields(d, ["latency (ticks)", "limit (packets)"], depth)
    u32_fields(d[8:12], ["loss"], depth, pct)
    u32_fields(d[12:16], ["gap"], depth)
    u32_fields(d[16:20], ["duplicate"], depth, pct)
    u32_fields(d[20:24], ["jitter (ticks)"], depth)

def table(d, comment, depth):
    n = len(d) // 2
    vals = struct.unpack_from(f"<{n}h", d)
    emit(d, f"{comment}: {n} x i16, first {list(vals[:4])}, last {list(vals[-4:])}", depth)

NETEM = {
    1: ("TCA_NETEM_CORR", lambda d, k: u32_fields(d, ["delay_corr", "loss_corr", "dup_corr"], k, pct)),
    2: ("TCA_NETEM_DELAY_DIST", lambda d, k: table(d, "table", k)),
    3: ("TCA_NETEM_REORDER", lambda d, k: u32_fields(d, ["probability", "correlation"], k, pct)),
    4: ("TCA_NETEM_CORRUPT", lambda d, k: u32_fields(d, ["probability", "correlation"], k, pct)),
    5: ("TCA_NETEM_LOSS", None),
    6: ("TCA_NETEM_RATE", lambda d, k: (u32_fields(d[:4], ["rate (bytes/s)"], k),
                                         u32_fields(d[4:], ["packet_overhead", "cell_size", "cell_overhead"], k))),
    8: ("TCA_NETEM_RATE64", lambda d, k: emit(d, f"{struct.unpack('<Q', d)[0]} bytes/s", k)),
    10: ("TCA_NETEM_LATENCY64", lambda d, k: emit(d, f"{struct.unpack('<q', d)[0]} ns", k)),
    11: ("TCA_NETEM_JITTER64", lambda d, k: emit(d, f"{struct.unpack('<q', d)[0]} ns", k)),
    14: ("TCA_NETEM_PRNG_SEED", lambda d, k: emit(d, f"{struct.unpack('<Q', d)[0]}", k)),
}
NETEM_LOSS = {
    1: ("NETEM_LOSS_GI", lambda d, k: u32_fields(d, ["p13", "p31", "p32", "p14", "p23"], k, pct)),
    2: ("NETEM_LOSS_GE", lambda d, k: u32_fields(d, ["p", "r", "h", "k1"], k, pct)),
}
HTB = {
    1: ("TCA_HTB_PARMS", lambda d, k: (ratespec(d[0:12], "rate", k), ratespec(d[12:24], "ceil", k),
                                       u32_fields(d[24:], ["buffer (ticks)", "cbuffer (ticks)", "quantum",
                                                           "level", "prio"], k))),
    2: ("TCA_HTB_INIT", lambda d, k: u32_fields(d, ["version", "rate2quantum", "defcls (minor)",
                                                    "debug", "direct_pkts"], k)),
    3: ("TCA_HTB_CTAB", lambda d, k: emit(d, f"ceil table: 256 x u32 ticks, first {list(struct.unpack_from('<4I', d))}", k)),
    4: ("TCA_HTB_RTAB", lambda d, k: emit(d, f"rate table: 256 x u32 ticks, first {list(struct.unpack_from('<4I', d))}", k)),
    5: ("TCA_HTB_DIRECT_QLEN", lambda d, k: u32_fields(d, ["direct_qlen"], k)),
    6: ("TCA_HTB_RATE64", lambda d, k: emit(d, f"{struct.unpack('<Q', d)[0]} bytes/s", k)),
    7: ("TCA_HTB_CEIL64", lambda d, k: emit(d, f"{struct.unpack('<Q', d)[0]} bytes/s", k)),
}
TBF = {
    1: ("TCA_TBF_PARMS", lambda d, k: (ratespec(d[0:12], "rate", k), ratespec(d[12:24], "peakrate", k),
                                       u32_fields(d[24:], ["limit (bytes)", "buffer (ticks)", "mtu (ticks)"], k))),
    2: ("TCA_TBF_RTAB", lambda d, k: emit(d, f"rate table: 256 x u32 ticks, first {list(struct.unpack_from('<4I', d))}", k)),
    4: ("TCA_TBF_RATE64", lambda d, k: emit(d, f"{struct.unpack('<Q', d)[0]} bytes/s", k)),
    6: ("TCA_TBF_BURST", lambda d, k: u32_fields(d, ["burst (bytes)"], k)),
}

def u32_sel(d, k):
    flags, offshift, nkeys, _pad, offmask, off, offoff, hoff, hmask = struct.unpack_from("<BBBBHHhhI", d)
    emit(d[0:1], f"sel.flags {flags:#x} (1 = TERMINAL)", k)
    emit(d[1:2], f"sel.offshift {offshift}", k)
    emit(d[2:3], f"sel.nkeys {nkeys}", k)
    emit(d[3:4], "sel pad", k)
    emit(d[4:6], f"sel.offmask (be16) {offmask:#x}", k)
    emit(d[6:8], f"sel.off {off}", k)
    emit(d[8:10], f"sel.offoff {offoff}", k)
    emit(d[10:12], f"sel.hoff {hoff}", k)
    emit(d[12:16], f"sel.hmask (be32) {struct.unpack_from('>I', d, 12)[0]:#010x}", k)
    for i in range(nkeys):
        b = 16 + 16 * i
        mask, val = struct.unpack_from(">II", d, b)
        koff, koffmask = struct.unpack_from("<ii", d, b + 8)
        emit(d[b:b + 4], f"key[{i}].mask (be32) {mask:#010x}", k)
        emit(d[b + 4:b + 8], f"key[{i}].val (be32) {val:#010x}", k)
        emit(d[b + 8:b + 12], f"key[{i}].off {koff}", k)
        emit(d[b + 12:b + 16], f"key[{i}].offmask {koffmask}", k)

def mirred_parms(d, k):
    u32_fields(d[0:8], ["index", "capab"], k)
    action, refcnt, bindcnt, eaction = struct.unpack_from("<iiii", d, 8)
    emit(d[8:12], f"action {action} (4 = TC_ACT_STOLEN)", k)
    emit(d[12:16], f"refcnt {refcnt}", k)
    emit(d[16:20], f"bindcnt {bindcnt}", k)
    emit(d[20:24], f"eaction {eaction} (1 = TCA_EGRESS_REDIR)", k)
    u32_fields(d[24:28], ["ifindex"], k)

MIRRED = {2: ("TCA_MIRRED_PARMS", mirred_parms)}
ACT = {1: ("TCA_ACT_KIND", "string"), 2: ("TCA_ACT_OPTIONS", MIRRED)}
U32 = {
    1: ("TCA_U32_CLASSID", lambda d, k: emit(d, f"classid {handle(struct.unpack('<I', d)[0])}", k)),
    2: ("TCA_U32_HASH", lambda d, k: emit(d, f"htid {struct.unpack('<I', d)[0]:#010x}", k)),
    3: ("TCA_U32_LINK", lambda d, k: emit(d, f"link {struct.unpack('<I', d)[0]:#010x}", k)),
    4: ("TCA_U32_DIVISOR", lambda d, k: u32_fields(d, ["divisor"], k)),
    5: ("TCA_U32_SEL", u32_sel),
    7: ("TCA_U32_ACT", "actions"),
    11: ("TCA_U32_FLAGS", lambda d, k: u32_fields(d, ["flags"], k)),
}

def attrs(data, table, depth):
    pos = 0
    while pos + 4 <= len(data):
        alen, atype = struct.unpack_from("<HH", data, pos)
        kind, nested = atype & 0x3fff, bool(atype & 0x8000)
        value = data[pos + 4:pos + alen]
        aligned = (alen + 3) & ~3
        label, how = table.get(kind, (f"attr {kind}", None))
        flag = " | NLA_F_NESTED" if nested else ""
        emit(data[pos:pos + 4], f"nla len {alen}, type {label}{flag}", depth)
        if how == "string":
            emit(value, f'"{value.rstrip(bytes(1)).decode()}"', depth + 1)
        elif how == "actions":
            attrs(value, {i: (f"action #{i}", ACT) for i in range(1, 33)}, depth + 1)
        elif isinstance(how, dict):
            attrs(value, how, depth + 1)
        elif how is None and kind == 5 and table is NETEM:
            attrs(value, NETEM_LOSS, depth + 1)
        elif how is not None:
            how(value, depth + 1)
        else:
            emit(value, "value", depth + 1)
        if aligned > alen:
            emit(data[pos + alen:pos + aligned], "padding", depth)
        pos += aligned

body = msg[16:]
family, ifindex, h, parent, info = struct.unpack_from("<B3xiIII", body)
emit(body[0:4], f"tcm_family {family} + padding")
emit(body[4:8], f"tcm_ifindex {ifindex}")
emit(body[8:12], f"tcm_handle {h:#010x} ({handle(h)})")
emit(body[12:16], f"tcm_parent {parent:#010x} ({handle(parent)})")
emit(body[16:20], f"tcm_info {info:#010x} (filters: prio {info >> 16}, protocol {struct.pack('<H', info & 0xffff).hex()} in network order)")

kind = None
pos = 20
top = {1: ("TCA_KIND", "string")}
while pos + 4 <= len(body):
    alen, atype = struct.unpack_from("<HH", body, pos)
    value = body[pos + 4:pos + alen]
    aligned = (alen + 3) & ~3
    if atype == 1:
        kind = value.rstrip(b"\0").decode()
        emit(body[pos:pos + 4], f"nla len {alen}, type TCA_KIND")
        emit(body[pos + 4:pos + aligned], f'"{kind}" + NUL + padding', 1)
    elif atype & 0x3fff == 2:
        emit(body[pos:pos + 4], f"nla len {alen}, type TCA_OPTIONS{' | NLA_F_NESTED' if atype & 0x8000 else ''}")
        if kind == "netem":
            struct_netem_qopt(value[:24], 1)
            attrs(value[24:], NETEM, 1)
        else:
            attrs(value, {"htb": HTB, "tbf": TBF, "u32": U32}.get(kind, {}), 1)
        if aligned > alen:
            emit(body[pos + alen:pos + aligned], "padding")
    else:
        emit(body[pos:pos + aligned], f"attribute type {atype}, len {alen}")
    pos += aligned

print(f"# linkem tc fixture `{name}`: the request {version} sends for")
print(f"#   {command}")
print("# (device v0 = ifindex 3, ifb0 = ifindex 4, in a fresh namespace).")
print(f"# nlmsg_type {RTM[mtype]} ({mtype}), nlmsg_flags {flags:#06x} ({flag_names});")
print("# below: the body after the 16-byte nlmsghdr, one field a line.")
print("\n".join(out))

/* The per-packet loop of payload inspection (abfluss.dlp.inspect), built as the module
 * ``_abfluss_inspect``.
 *
 * Every packet passes through ``dispatch``. Most packets continue a flow that is already open:
 * an acknowledgement without payload, a segment of a TLS or SSH stream whose bytes are only
 * counted, a datagram of a side that is only counted. For those this code does exactly what
 * ``Inspector._general`` (Python) would do, on the same Python objects: the flow's last time and
 * closing time, ``Side.count`` of the side's stream, a UDP side's byte counts, the sweep. Any
 * other packet (one that starts or ends a flow, a SYN, payload a decoder reads) goes to
 * ``Inspector._general`` itself; payload that is read goes straight to the side's stream or
 * datagram handler. So there is one implementation of each rule: the fast cases here are the
 * Python code's own branches for packets that change nothing else, and the tests compare
 * this loop's tables with ``_general`` fed every packet (tests/test_inspect_loop.py).
 *
 * The Python loop cost 3-4 µs a packet (tuple unpacking, a call with eleven arguments, the
 * flow look-up, attribute reads): as much CPU as NFStream's whole meter on the same packets.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TCP 6
#define UDP 17
#define FIN 0x01
#define SYN 0x02
#define RST 0x04
#define SEQ_MOD 4294967296LL
#define HALF 2147483648LL

/* how a frame is read (slice_frame) */
#define KIND_SKIP 0
#define KIND_SLICED 1
#define KIND_SLOW 2

static PyObject *s_flows, *s_last, *s_closing, *s_client_addr, *s_client_port, *s_dirs, *s_counting, *s_peek,
    *s_stream, *s_next_seq, *s_delivered, *s_repeated, *s_payload, *s_gaps, *s_next_sweep, *s_sweep, *s_now,
    *s_general, *s_direction, *s_segment, *s_datagram, *s_idle, *s_linger;
static PyObject *ports[65536];

typedef struct {
    PyObject *insp, *flows;
    double idle, linger;
    double synced; /* the value insp.now was last set to here */
    int have_synced;
} state_t;

static PyObject *port(long n) {
    if (n < 0 || n > 65535) return PyLong_FromLong(n);
    if (ports[n] == NULL && (ports[n] = PyLong_FromLong(n)) == NULL) return NULL;
    Py_INCREF(ports[n]);
    return ports[n];
}

static int get_double(PyObject *o, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int get_ll(PyObject *o, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int set_ll(PyObject *o, PyObject *name, long long v) {
    PyObject *x = PyLong_FromLongLong(v);
    if (x == NULL) return -1;
    int r = PyObject_SetAttr(o, name, x);
    Py_DECREF(x);
    return r;
}

/* 1 if the attribute is true, 0 if false, -1 on error */
static int get_bool(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* insp.now = now before any Python code runs (sessions time their records by it) */
static int sync_now(state_t *st, double now) {
    if (st->have_synced && st->synced == now) return 0;
    PyObject *x = PyFloat_FromDouble(now);
    if (x == NULL) return -1;
    int r = PyObject_SetAttr(st->insp, s_now, x);
    Py_DECREF(x);
    if (r == 0) st->synced = now, st->have_synced = 1;
    return r;
}

static int init_state(state_t *st, PyObject *insp) {
    st->insp = insp;
    st->have_synced = 0;
    st->flows = PyObject_GetAttr(insp, s_flows);
    if (st->flows == NULL) return -1;
    if (!PyDict_Check(st->flows)) {
        PyErr_SetString(PyExc_TypeError, "Inspector.flows is not a dict");
        Py_CLEAR(st->flows);
        return -1;
    }
    if (get_double(insp, s_idle, &st->idle) < 0 || get_double(insp, s_linger, &st->linger) < 0) {
        Py_CLEAR(st->flows);
        return -1;
    }
    return 0;
}

/* ``Side.count`` (streams.py) on the stream object: bytes of an encrypted side counted, nothing held */
static int side_count(PyObject *side, long long seq, long long size) {
    PyObject *nx = PyObject_GetAttr(side, s_next_seq);
    if (nx == NULL) return -1;
    long long next;
    if (nx == Py_None) {
        next = seq;
    } else {
        next = PyLong_AsLongLong(nx);
        if (next == -1 && PyErr_Occurred()) { Py_DECREF(nx); return -1; }
    }
    Py_DECREF(nx);
    long long end = ((seq + size) % SEQ_MOD + SEQ_MOD) % SEQ_MOD;
    long long ahead = (((end - next + HALF) % SEQ_MOD) + SEQ_MOD) % SEQ_MOD - HALF;
    long long delivered, repeated;
    if (get_ll(side, s_delivered, &delivered) < 0 || get_ll(side, s_repeated, &repeated) < 0) return -1;
    if (ahead > 0) {
        long long d = ahead < size ? ahead : size;
        delivered += d;
        repeated += size - d;
        next = end;
        if (set_ll(side, s_delivered, delivered) < 0) return -1;
    } else {
        repeated += size;
    }
    if (set_ll(side, s_repeated, repeated) < 0 || set_ll(side, s_next_seq, next) < 0) return -1;
    return 0;
}

static int bytes_less(PyObject *a, PyObject *b) {
    Py_ssize_t la = PyBytes_GET_SIZE(a), lb = PyBytes_GET_SIZE(b);
    int c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la < lb ? la : lb);
    return c < 0 || (c == 0 && la < lb);
}

static int bytes_equal(PyObject *a, PyObject *b) {
    return PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b) &&
           memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), PyBytes_GET_SIZE(a)) == 0;
}

/* The payload as bytes: ``given`` if not NULL, else made from ``pl``/``plen`` once into ``*owned`` */
static PyObject *payload_of(PyObject *given, PyObject **owned, const char *pl, Py_ssize_t plen) {
    if (given != NULL) return given;
    if (*owned == NULL) *owned = PyBytes_FromStringAndSize(plen ? pl : "", plen);
    return *owned;
}

/* One TCP/UDP packet (``Inspector._general``'s arguments). ``payload`` may be NULL: then it is
 * ``pl``/``plen`` and made into bytes only when Python code needs it. Addresses are bytes. */
static int dispatch(state_t *st, double now, double ts, long proto, PyObject *src, PyObject *dst, long sport,
                    long dport, long flags, long long seq, const char *pl, Py_ssize_t plen, PyObject *payload,
                    long long missing) {
    PyObject *owned_payload = NULL, *key = NULL, *flow, *tmp;
    int rc = -1, general = 0;
    if (payload != NULL) {
        plen = PyBytes_GET_SIZE(payload);
        pl = PyBytes_AS_STRING(payload);
    }
    PyObject *p_proto = PyLong_FromLong(proto), *p_sport = port(sport), *p_dport = port(dport);
    if (p_proto == NULL || p_sport == NULL || p_dport == NULL) goto out_ports;
    if (bytes_less(src, dst) || (bytes_equal(src, dst) && sport < dport))
        key = PyTuple_Pack(5, p_proto, src, p_sport, dst, p_dport);
    else
        key = PyTuple_Pack(5, p_proto, dst, p_dport, src, p_sport);
    if (key == NULL) goto out_ports;
    flow = PyDict_GetItemWithError(st->flows, key); /* borrowed */
    if (flow == NULL) {
        if (PyErr_Occurred()) goto out;
        general = 1;
        goto out_general;
    }
    Py_INCREF(flow);
    if (proto == TCP && (flags & SYN)) { general = 1; goto out_flow; }
    double last, closing = 0;
    if (get_double(flow, s_last, &last) < 0) goto out_flow;
    PyObject *cl = PyObject_GetAttr(flow, s_closing);
    if (cl == NULL) goto out_flow;
    int has_closing = cl != Py_None;
    if (has_closing) closing = PyFloat_AsDouble(cl);
    Py_DECREF(cl);
    if (has_closing && closing == -1.0 && PyErr_Occurred()) goto out_flow;
    if (now - last > st->idle || (has_closing && now - closing > st->linger)) { general = 1; goto out_flow; }

    /* The flow goes on: as _general's branches after ``flow.last = now``. */
    tmp = PyFloat_FromDouble(now);
    if (tmp == NULL || PyObject_SetAttr(flow, s_last, tmp) < 0) { Py_XDECREF(tmp); goto out_flow; }
    Py_DECREF(tmp);
    PyObject *caddr = PyObject_GetAttr(flow, s_client_addr);
    if (caddr == NULL) goto out_flow;
    long long cport;
    int from_client = PyBytes_Check(caddr) && bytes_equal(src, caddr);
    Py_DECREF(caddr);
    if (get_ll(flow, s_client_port, &cport) < 0) goto out_flow;
    from_client = from_client && cport == sport;
    if (plen || missing) {
        PyObject *dirs = PyObject_GetAttr(flow, s_dirs), *d;
        if (dirs == NULL) goto out_flow;
        d = PyList_Check(dirs) && PyList_GET_SIZE(dirs) == 2 ? PyList_GET_ITEM(dirs, from_client ? 0 : 1) : NULL;
        if (d == NULL) { Py_DECREF(dirs); PyErr_SetString(PyExc_TypeError, "Flow.dirs"); goto out_flow; }
        Py_INCREF(d);
        Py_DECREF(dirs);
        if (d == Py_None) { /* the side's first payload: Flow.direction makes it */
            Py_DECREF(d);
            if (sync_now(st, now) < 0) goto out_flow;
            d = PyObject_CallMethodOneArg(flow, s_direction, from_client ? Py_True : Py_False);
            if (d == NULL) goto out_flow;
        }
        int counting = get_bool(d, s_counting);
        if (counting < 0) { Py_DECREF(d); goto out_flow; }
        if (proto == TCP) {
            int peek = counting ? get_bool(d, s_peek) : 0;
            if (peek < 0) { Py_DECREF(d); goto out_flow; }
            PyObject *stream = PyObject_GetAttr(d, s_stream);
            Py_DECREF(d);
            if (stream == NULL) goto out_flow;
            int r;
            if (counting && !peek) {
                r = side_count(stream, seq, (long long)plen + missing);
            } else {
                PyObject *s = PyLong_FromLongLong(seq), *m = PyLong_FromLongLong(missing), *res = NULL;
                PyObject *data = payload_of(payload, &owned_payload, pl, plen);
                if (s && m && data && sync_now(st, now) == 0)
                    res = PyObject_CallMethodObjArgs(stream, s_segment, s, data, m, NULL);
                Py_XDECREF(s);
                Py_XDECREF(m);
                r = res == NULL ? -1 : 0;
                Py_XDECREF(res);
            }
            Py_DECREF(stream);
            if (r < 0) goto out_flow;
        } else if (counting) { /* Direction.datagram of a side that is only counted */
            long long have;
            int r = get_ll(d, s_payload, &have) < 0 || set_ll(d, s_payload, have + plen) < 0 ||
                    get_ll(d, s_gaps, &have) < 0 || set_ll(d, s_gaps, have + missing) < 0;
            Py_DECREF(d);
            if (r) goto out_flow;
        } else {
            PyObject *m = PyLong_FromLongLong(missing), *res = NULL;
            PyObject *data = payload_of(payload, &owned_payload, pl, plen);
            if (m && data && sync_now(st, now) == 0)
                res = PyObject_CallMethodObjArgs(d, s_datagram, data, m, NULL);
            Py_XDECREF(m);
            Py_DECREF(d);
            if (res == NULL) goto out_flow;
            Py_DECREF(res);
        }
    }
    if (proto == TCP && (flags & (FIN | RST))) {
        cl = PyObject_GetAttr(flow, s_closing);
        if (cl == NULL) goto out_flow;
        int none = cl == Py_None;
        Py_DECREF(cl);
        if (none) {
            tmp = PyFloat_FromDouble(now);
            if (tmp == NULL || PyObject_SetAttr(flow, s_closing, tmp) < 0) { Py_XDECREF(tmp); goto out_flow; }
            Py_DECREF(tmp);
        }
    }
    double next_sweep;
    if (get_double(st->insp, s_next_sweep, &next_sweep) < 0) goto out_flow;
    if (now >= next_sweep) {
        if (sync_now(st, now) < 0) goto out_flow;
        tmp = PyFloat_FromDouble(now);
        if (tmp == NULL) goto out_flow;
        PyObject *res = PyObject_CallMethodOneArg(st->insp, s_sweep, tmp);
        Py_DECREF(tmp);
        if (res == NULL) goto out_flow;
        Py_DECREF(res);
    }
    rc = 0;
out_flow:
    Py_DECREF(flow);
out_general:
    if (general) {
        rc = -1;
        PyObject *a_now = PyFloat_FromDouble(now), *a_ts = PyFloat_FromDouble(ts), *a_flags = PyLong_FromLong(flags),
                 *a_seq = PyLong_FromLongLong(seq), *a_missing = PyLong_FromLongLong(missing);
        PyObject *data = payload_of(payload, &owned_payload, pl, plen);
        if (a_now && a_ts && a_flags && a_seq && a_missing && data) {
            st->have_synced = 0; /* _general sets insp.now itself */
            PyObject *res = PyObject_CallMethodObjArgs(st->insp, s_general, a_now, a_ts, p_proto, src, dst, p_sport,
                                                       p_dport, a_flags, a_seq, data, a_missing, NULL);
            if (res != NULL) { rc = 0; Py_DECREF(res); }
        }
        Py_XDECREF(a_now);
        Py_XDECREF(a_ts);
        Py_XDECREF(a_flags);
        Py_XDECREF(a_seq);
        Py_XDECREF(a_missing);
    }
out:
    Py_XDECREF(key);
out_ports:
    Py_XDECREF(p_proto);
    Py_XDECREF(p_sport);
    Py_XDECREF(p_dport);
    Py_XDECREF(owned_payload);
    return rc;
}

/* packet(insp, now, ts, proto, src, dst, sport, dport, flags, seq, payload, missing):
 * ``Inspector.sliced``: one packet already sliced */
static PyObject *py_packet(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 12) {
        PyErr_SetString(PyExc_TypeError, "packet() takes 12 arguments");
        return NULL;
    }
    state_t st;
    double now = PyFloat_AsDouble(args[1]), ts = PyFloat_AsDouble(args[2]);
    long proto = PyLong_AsLong(args[3]), sport = PyLong_AsLong(args[6]), dport = PyLong_AsLong(args[7]),
         flags = PyLong_AsLong(args[8]);
    long long seq = PyLong_AsLongLong(args[9]), missing = PyLong_AsLongLong(args[11]);
    if (PyErr_Occurred()) return NULL;
    if (!PyBytes_Check(args[4]) || !PyBytes_Check(args[5]) || !PyBytes_Check(args[10])) {
        PyErr_SetString(PyExc_TypeError, "packet(): addresses and payload must be bytes");
        return NULL;
    }
    if (init_state(&st, args[0]) < 0) return NULL;
    int r = sync_now(&st, now) < 0 ? -1
            : dispatch(&st, now, ts, proto, args[4], args[5], sport, dport, flags, seq, NULL, 0, args[10], missing);
    Py_DECREF(st.flows);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

static inline uint32_t u32(const uint8_t *p, int little) {
    return little ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
                  : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static inline uint32_t be32(const uint8_t *p) { return u32(p, 0); }

/* Bytes of a frame sliced here at most (Ethernet, IPv4 with options or IPv6, TCP's fixed header):
 * a TCP/UDP header beyond them is left to slice_packet (IPv4 options cannot put it there). */
#define WINDOW 96

/* How one Ethernet frame is read: as streams.slice_packet reads it (the tests check it). */
typedef struct {
    int kind; /* KIND_SKIP, KIND_SLICED or KIND_SLOW */
    int proto, addr_len;
    const uint8_t *src, *dst;
    long sport, dport, flags;
    long long seq, missing;
    Py_ssize_t pstart, pend; /* payload within the frame (pend <= pstart: none) */
    uint32_t fold; /* _split.fold of the two addresses */
} sliced_t;

static void slice_frame(const uint8_t *f, Py_ssize_t length, sliced_t *p) {
    p->kind = KIND_SKIP;
    if (length < 34) return;
    unsigned eth = be16(f + 12);
    if (eth == 0x8100 || eth == 0x88A8) { p->kind = KIND_SLOW; return; } /* VLAN tags */
    int v4 = eth == 0x0800, v6 = eth == 0x86DD && length >= 54;
    if (!v4 && !v6) return;
    Py_ssize_t l4, ip_end;
    int proto;
    if (v6) {
        proto = f[20];
        if (proto != TCP && proto != UDP) { p->kind = KIND_SLOW; return; } /* extension headers */
        l4 = 54;
        ip_end = 54 + (Py_ssize_t)be16(f + 18);
    } else {
        if (be16(f + 20) & 0x1FFF) return; /* a non-first fragment */
        proto = f[23];
        l4 = 14 + (f[14] & 0x0F) * 4;
        unsigned total = be16(f + 16);
        ip_end = total > 0 ? 14 + (Py_ssize_t)total : length;
    }
    if (!((proto == TCP && length >= l4 + 20) || (proto == UDP && length >= l4 + 8))) return;
    if (l4 + 20 > WINDOW) { p->kind = KIND_SLOW; return; }
    p->kind = KIND_SLICED;
    p->proto = proto;
    p->addr_len = v6 ? 16 : 4;
    p->src = v6 ? f + 22 : f + 26;
    p->dst = v6 ? f + 38 : f + 30;
    if (v6) {
        uint32_t x = 0;
        for (int i = 0; i < 32; i += 4) x ^= be32(f + 22 + i);
        p->fold = x;
    } else {
        p->fold = be32(f + 26) ^ be32(f + 30);
    }
    p->sport = be16(f + l4);
    p->dport = be16(f + l4 + 2);
    if (proto == TCP) {
        p->seq = be32(f + l4 + 4);
        p->flags = f[l4 + 13];
        p->pstart = l4 + (f[l4 + 12] >> 4) * 4;
    } else {
        p->seq = 0;
        p->flags = 0;
        p->pstart = l4 + 8;
    }
    p->pend = ip_end < length ? ip_end : length;
    Py_ssize_t payload = p->pend > p->pstart ? p->pend - p->pstart : 0;
    Py_ssize_t missing = ip_end - p->pstart - payload;
    p->missing = missing > 0 ? missing : 0;
}

/* A packed address as bytes: the object made for an earlier packet of the same host when it is
 * still in this small cache (most packets are between a few hosts), so the flow key's bytes are
 * not allocated again and their hash is not computed again. Bytes are immutable: sharing one
 * object is the same to every reader. */
#define ADDRESS_CACHE 1024
static PyObject *addresses[ADDRESS_CACHE];

static PyObject *address(const uint8_t *a, int len) {
    uint32_t x = be32(a);
    for (int i = 4; i < len; i += 4) x ^= be32(a + i);
    PyObject **slot = &addresses[(x * 2654435761u) >> 22];
    PyObject *o = *slot;
    if (o != NULL && PyBytes_GET_SIZE(o) == len && memcmp(PyBytes_AS_STRING(o), a, len) == 0) {
        Py_INCREF(o);
        return o;
    }
    o = PyBytes_FromStringAndSize((const char *)a, len);
    if (o == NULL) return NULL;
    Py_XSETREF(*slot, o);
    Py_INCREF(o);
    return o;
}

/* _split.part_of for a packet's fold */
static inline long part_of(uint32_t fold, long parts) {
    return (long)(((((uint64_t)fold * 0x9E3779B1ULL) & 0xFFFFFFFFULL) >> 16) % (uint64_t)parts);
}

/* capture(insp, mm, part, parts, slow): every packet of a classic pcap of Ethernet frames (``mm``:
 * its bytes) in order, as capture._inspect_classic describes; returns (records, offset of a record
 * cut short or None). ``now`` is the latest time of all records so far. Frames left to
 * ``slice_packet`` (VLAN tags, IPv6 extension headers) go to ``slow(now, ts, start, end)``. */
static PyObject *py_capture(PyObject *self, PyObject *args) {
    PyObject *insp, *slow, *result = NULL;
    Py_buffer mm;
    long part, parts;
    if (!PyArg_ParseTuple(args, "Oy*llO", &insp, &mm, &part, &parts, &slow)) return NULL;
    state_t st;
    st.flows = NULL;
    const uint8_t *b = mm.buf;
    Py_ssize_t size = mm.len, off = 24, cut = -1;
    long long records = 0;
    if (size < 24 || parts < 1) {
        PyErr_SetString(PyExc_ValueError, "capture(): not a classic pcap");
        goto out;
    }
    if (init_state(&st, insp) < 0) goto out;
    int little = (b[0] == 0xd4 && b[1] == 0xc3 && b[2] == 0xb2 && b[3] == 0xa1) ||
                 (b[0] == 0x4d && b[1] == 0x3c && b[2] == 0xb2 && b[3] == 0xa1);
    int nano = (b[0] == 0x4d && b[1] == 0x3c) || (b[0] == 0xa1 && b[1] == 0xb2 && b[2] == 0x3c && b[3] == 0x4d);
    double scale = nano ? 1e9 : 1e6, latest = -Py_HUGE_VAL;
    /* insp.now is what the Python loop left it: the time of the last packet dispatched (a frame
     * ``slow`` finds no TCP/UDP in does not set it). ``owed``: that time, not yet written. */
    double owed = 0;
    int owe = 0;
    sliced_t p;
    while (off < size) {
        if (off + 16 > size) { cut = off; break; }
        Py_ssize_t start = off + 16, length = (Py_ssize_t)u32(b + off + 8, little), end = start + length;
        if (end > size) { cut = off; break; }
        records++;
        double ts = (double)u32(b + off, little) + (double)u32(b + off + 4, little) / scale;
        double now = latest = ts > latest ? ts : latest;
        off = end;
        slice_frame(b + start, length, &p);
        if (p.kind == KIND_SKIP) continue;
        if (p.kind == KIND_SLOW) {
            if (owe && sync_now(&st, owed) < 0) goto out;
            owe = 0;
            st.have_synced = 0; /* Inspector.sliced sets insp.now when the frame is TCP/UDP */
            PyObject *res = PyObject_CallFunction(slow, "ddnn", now, ts, start, end);
            if (res == NULL) goto out;
            Py_DECREF(res);
            continue;
        }
        if (parts > 1 && part_of(p.fold, parts) != part) continue;
        PyObject *src = address(p.src, p.addr_len), *dst = address(p.dst, p.addr_len);
        int r = -1;
        if (src && dst)
            r = dispatch(&st, now, ts, p.proto, src, dst, p.sport, p.dport, p.flags, p.seq,
                         (const char *)b + start + p.pstart, p.pend > p.pstart ? p.pend - p.pstart : 0, NULL,
                         p.missing);
        Py_XDECREF(src);
        Py_XDECREF(dst);
        if (r < 0) goto out;
        owed = now, owe = 1;
    }
    if (owe && sync_now(&st, owed) < 0) goto out;
    if (cut >= 0) result = Py_BuildValue("(Ln)", records, cut);
    else result = Py_BuildValue("(LO)", records, Py_None);
out:
    Py_XDECREF(st.flows);
    PyBuffer_Release(&mm);
    return result;
}

/* frame(buf, parts): how ``capture`` reads one Ethernet frame, for the tests: (kind, proto, src, dst,
 * sport, dport, flags, seq, payload, missing, worker of ``parts``); only kind for a frame not sliced */
static PyObject *py_frame(PyObject *self, PyObject *args) {
    Py_buffer buf;
    long parts;
    if (!PyArg_ParseTuple(args, "y*l", &buf, &parts)) return NULL;
    sliced_t p;
    PyObject *r;
    slice_frame(buf.buf, buf.len, &p);
    if (p.kind != KIND_SLICED || parts < 1)
        r = Py_BuildValue("(i)", p.kind);
    else
        r = Py_BuildValue("(iiy#y#lllLy#Ll)", p.kind, p.proto, p.src, (Py_ssize_t)p.addr_len, p.dst,
                          (Py_ssize_t)p.addr_len, p.sport, p.dport, p.flags, p.seq, (const char *)buf.buf + p.pstart,
                          p.pend > p.pstart ? p.pend - p.pstart : (Py_ssize_t)0, p.missing, part_of(p.fold, parts));
    PyBuffer_Release(&buf);
    return r;
}

static PyMethodDef methods[] = {
    {"frame", py_frame, METH_VARARGS, "frame(buf, parts): how capture() slices one Ethernet frame (for tests)."},
    {"packet", (PyCFunction)(void (*)(void))py_packet, METH_FASTCALL,
     "packet(insp, now, ts, proto, src, dst, sport, dport, flags, seq, payload, missing): one sliced packet."},
    {"capture", py_capture, METH_VARARGS,
     "capture(insp, mm, part, parts, slow): every packet of a classic Ethernet pcap; (records, cut or None)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_abfluss_inspect",
                                    "The per-packet loop of abfluss.dlp.inspect (C).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__abfluss_inspect(void) {
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_flows, "flows"}, {&s_last, "last"}, {&s_closing, "closing"}, {&s_client_addr, "client_addr"},
        {&s_client_port, "client_port"}, {&s_dirs, "dirs"}, {&s_counting, "counting"}, {&s_peek, "peek"},
        {&s_stream, "stream"}, {&s_next_seq, "next_seq"}, {&s_delivered, "delivered"}, {&s_repeated, "repeated"},
        {&s_payload, "payload"}, {&s_gaps, "gaps"}, {&s_next_sweep, "next_sweep"}, {&s_sweep, "_sweep"},
        {&s_now, "now"}, {&s_general, "_general"}, {&s_direction, "direction"}, {&s_segment, "segment"},
        {&s_datagram, "datagram"}, {&s_idle, "idle"}, {&s_linger, "linger"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL) return NULL;
    return PyModule_Create(&module);
}

/* The DNS message parser of abfluss.readers._dns_wire, in C: the DNS scan decodes every message
 * of a capture, and in Python that cost more than NFStream's whole metering of the same file.
 *
 * Semantics are exactly those documented in _dns_wire.py (and checked against a Python reference
 * implementation in tests/test_dns_wire_c.py, on real packets and on hypothesis' inputs):
 * names in Zeek's escaped form (printable ASCII as is, every other byte, backslash and dot inside
 * a label as \xNN), compression pointers that must point backwards, a message that cannot be
 * parsed raises WireError with the reason. Every read is bounds-checked against the message's end.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define MAX_NAME 1024
#define MAX_JUMPS 128
/* Escaped text of a name: at most 4 characters a byte; labels are kept while the name is within
 * MAX_NAME (a longer one is an error, but the walk goes on for the reason Python would give). */
#define TEXT_MAX (4 * (MAX_NAME + 64) + 8)

static PyObject *WireError;
static PyObject *type_names; /* dict: number -> mnemonic (_dns_wire.QTYPES) */
static PyObject *type_cache[65536];
static PyObject *rcode_names; /* dict: number -> name (_dns_wire.RCODES) */
static PyObject *rcode_cache[16];
static PyObject *str_udp, *str_tcp;

/* An error: a fixed reason, or "unsupported label type 0x%02x" with its bits. */
typedef struct {
    const char *reason;
    int label_type; /* >= 0: the reason is the label type one */
} err_t;

#define FAIL(e, r) do { (e)->reason = (r); (e)->label_type = -1; return -1; } while (0)

static int raise_err(const err_t *e) {
    if (e->label_type >= 0)
        PyErr_Format(WireError, "unsupported label type 0x%02x", e->label_type);
    else
        PyErr_SetString(WireError, e->reason);
    return -1;
}

static PyObject *type_name(unsigned n) {
    PyObject *s = type_cache[n];
    if (s == NULL) {
        PyObject *key = PyLong_FromUnsignedLong(n);
        if (key == NULL) return NULL;
        s = type_names ? PyDict_GetItemWithError(type_names, key) : NULL;
        Py_DECREF(key);
        if (s != NULL) Py_INCREF(s);
        else if (PyErr_Occurred()) return NULL;
        else s = PyUnicode_FromFormat("TYPE%u", n);
        if (s == NULL) return NULL;
        type_cache[n] = s; /* kept for the process's life */
    }
    Py_INCREF(s);
    return s;
}

static PyObject *rcode_name(unsigned n) {
    PyObject *s = rcode_cache[n & 15];
    if (s == NULL) {
        PyObject *key = PyLong_FromUnsignedLong(n & 15);
        if (key == NULL) return NULL;
        s = rcode_names ? PyDict_GetItemWithError(rcode_names, key) : NULL;
        Py_DECREF(key);
        if (s != NULL) Py_INCREF(s);
        else if (PyErr_Occurred()) return NULL;
        else s = PyUnicode_FromFormat("RCODE%u", n & 15);
        if (s == NULL) return NULL;
        rcode_cache[n & 15] = s;
    }
    Py_INCREF(s);
    return s;
}

static const char HEX[] = "0123456789abcdef";

/* Append one label's bytes escaped; dot_plain: a dot stays a dot (TXT strings). */
static inline char *escape(char *out, const uint8_t *p, Py_ssize_t k, int dot_plain) {
    for (Py_ssize_t i = 0; i < k; i++) {
        uint8_t c = p[i];
        if (c >= 0x20 && c < 0x7F && c != 0x5C && (c != 0x2E || dot_plain)) {
            *out++ = (char)c;
        } else {
            *out++ = '\\'; *out++ = 'x'; *out++ = HEX[c >> 4]; *out++ = HEX[c & 15];
        }
    }
    return out;
}

static PyObject *ascii_str(const char *p, Py_ssize_t k) {
    PyObject *s = PyUnicode_New(k, 127);
    if (s != NULL) memcpy(PyUnicode_DATA(s), p, (size_t)k);
    return s;
}

/* The name at off (read_name): escaped text into text/tlen, the offset after it into *after. */
static int read_name(const uint8_t *b, Py_ssize_t n, Py_ssize_t off, char *text, Py_ssize_t *tlen,
                     Py_ssize_t *after, err_t *e) {
    Py_ssize_t end = -1, raw = 0, labels = 0;
    int jumps = 0;
    char *out = text;
    for (;;) {
        if (off >= n) FAIL(e, "name runs past the end of the message");
        unsigned length = b[off];
        if (length && length < 64) {
            Py_ssize_t nxt = off + 1 + length;
            if (nxt > n) FAIL(e, "label runs past the end of the message");
            if (raw <= MAX_NAME) { /* beyond it the name is an error anyway: walk on, store no more */
                if (labels) *out++ = '.';
                out = escape(out, b + off + 1, length, 0);
            }
            raw += length + (labels ? 1 : 0);
            labels++;
            off = nxt;
            continue;
        }
        if (length == 0) { off++; break; }
        if (length < 0xC0) {
            e->reason = NULL; e->label_type = (int)(length & 0xC0);
            return -1;
        }
        if (off + 1 >= n) FAIL(e, "compression pointer cut off");
        Py_ssize_t target = ((Py_ssize_t)(length & 0x3F) << 8) | b[off + 1];
        if (target >= off) FAIL(e, "compression pointer does not point backwards");
        if (++jumps > MAX_JUMPS) FAIL(e, "too many compression pointers");
        if (end < 0) end = off + 2;
        off = target;
    }
    *after = end >= 0 ? end : off;
    if (raw + 2 > MAX_NAME) FAIL(e, "name longer than any DNS name");
    *tlen = out - text;
    return 0;
}

/* _question_end: 1 and *end for an uncompressed name, 0 when a label byte is >= 64. */
static int question_end(const uint8_t *b, Py_ssize_t n, Py_ssize_t off, Py_ssize_t *end, err_t *e) {
    while (off < n) {
        unsigned length = b[off];
        if (length == 0) { *end = off + 1; return 1; }
        if (length >= 64) return 0;
        off += 1 + length;
    }
    FAIL(e, "name runs past the end of the message");
}

/* _skip_name */
static int skip_name(const uint8_t *b, Py_ssize_t n, Py_ssize_t off, Py_ssize_t *after, err_t *e) {
    for (int i = 0; i < MAX_NAME; i++) {
        if (off >= n) FAIL(e, "name runs past the end of the message");
        unsigned length = b[off];
        if (length == 0) { *after = off + 1; return 0; }
        if ((length & 0xC0) == 0xC0) {
            if (off + 1 >= n || ((Py_ssize_t)(length & 0x3F) << 8 | b[off + 1]) >= off)
                FAIL(e, "compression pointer cut off or not pointing backwards");
            *after = off + 2;
            return 0;
        }
        if (length & 0xC0) {
            e->reason = NULL; e->label_type = (int)(length & 0xC0);
            return -1;
        }
        off += 1 + length;
    }
    FAIL(e, "name longer than any DNS name");
}

static inline unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* _rdata: an answer's data as text. NULL only on a Python error (memory). */
static PyObject *rdata(const uint8_t *b, Py_ssize_t n, Py_ssize_t off, unsigned rtype, unsigned rdlen,
                       char *text) {
    Py_ssize_t tlen, after;
    err_t e;
    if (rtype == 1 && rdlen == 4) {
        char s[16];
        int k = snprintf(s, sizeof s, "%u.%u.%u.%u", b[off], b[off + 1], b[off + 2], b[off + 3]);
        return ascii_str(s, k);
    }
    if (rtype == 28 && rdlen == 16) {
        char s[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, b + off, s, sizeof s) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
        return ascii_str(s, (Py_ssize_t)strlen(s));
    }
    Py_ssize_t at = -1;
    if (rtype == 2 || rtype == 5 || rtype == 12 || rtype == 39) at = off;  /* NS, CNAME, PTR, DNAME */
    else if (rtype == 15) at = off + 2;  /* MX: preference, exchange */
    else if (rtype == 33) at = off + 6;  /* SRV: priority, weight, port, target */
    if (at >= 0) {
        if (read_name(b, n, at, text, &tlen, &after, &e) == 0) return ascii_str(text, tlen);
    } else if (rtype == 16 || rtype == 99) {  /* TXT: character strings joined by a space */
        /* Python slices buf[off+1:off+1+k]: a string may run past the record, up to the message end */
        Py_ssize_t end = off + rdlen, size = 0;
        for (Py_ssize_t p = off; p < end; p += 1 + b[p]) {
            Py_ssize_t k = b[p], avail = n - (p + 1);
            if (k > avail) k = avail > 0 ? avail : 0;
            size += 4 * k + 1;
        }
        char *buf = PyMem_Malloc((size_t)size + 1), *out = buf;
        if (buf == NULL) return PyErr_NoMemory();
        int first = 1;
        for (Py_ssize_t p = off; p < end; p += 1 + b[p]) {
            Py_ssize_t k = b[p], avail = n - (p + 1);
            if (k > avail) k = avail > 0 ? avail : 0;
            if (!first) *out++ = ' ';
            first = 0;
            out = escape(out, b + p + 1, k, 1);
        }
        PyObject *s = ascii_str(buf, out - buf);
        PyMem_Free(buf);
        return s;
    }
    PyObject *name = type_name(rtype);
    if (name == NULL) return NULL;
    PyObject *s = PyUnicode_FromFormat("<%U:%u bytes>", name, rdlen);
    Py_DECREF(name);
    return s;
}

/* _answers: appends to the lists; stops quietly at the first answer that is cut off. */
static int answers(const uint8_t *b, Py_ssize_t n, Py_ssize_t off, unsigned count, PyObject *ans,
                   PyObject *types, PyObject *ttls, char *text) {
    err_t e;
    for (unsigned i = 0; i < count; i++) {
        if (skip_name(b, n, off, &off, &e) < 0) return 0;
        if (off + 10 > n) return 0;
        unsigned rtype = be16(b + off), rdlen = be16(b + off + 8);
        uint32_t ttl = (uint32_t)b[off + 4] << 24 | (uint32_t)b[off + 5] << 16 | (uint32_t)b[off + 6] << 8 | b[off + 7];
        off += 10;
        if (off + rdlen > n) return 0;
        PyObject *a = rdata(b, n, off, rtype, rdlen, text);
        if (a == NULL) return -1;
        int r = PyList_Append(ans, a);
        Py_DECREF(a);
        if (r < 0) return -1;
        PyObject *t = type_name(rtype);
        if (t == NULL) return -1;
        r = PyList_Append(types, t);
        Py_DECREF(t);
        if (r < 0) return -1;
        PyObject *f = PyFloat_FromDouble((double)ttl);
        if (f == NULL) return -1;
        r = PyList_Append(ttls, f);
        Py_DECREF(f);
        if (r < 0) return -1;
        off += rdlen;
    }
    return 0;
}

static PyObject *lower_bytes(const uint8_t *p, Py_ssize_t k) {
    PyObject *o = PyBytes_FromStringAndSize(NULL, k);
    if (o == NULL) return NULL;
    char *d = PyBytes_AS_STRING(o);
    for (Py_ssize_t i = 0; i < k; i++) d[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    return o;
}

static PyObject *lower_str(const char *p, Py_ssize_t k) {
    PyObject *o = PyUnicode_New(k, 127);
    if (o == NULL) return NULL;
    char *d = (char *)PyUnicode_DATA(o);
    for (Py_ssize_t i = 0; i < k; i++) d[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    return o;
}

/* One message b[0:n]: (id, qr, opcode, rcode, key, qtype, query, answers, answer_types, ttls), or
 * NULL with WireError set. */
static PyObject *parse_message(const uint8_t *b, Py_ssize_t n) {
    char text[TEXT_MAX];
    err_t e;
    if (n < 12) return PyErr_Format(WireError, "%zd bytes: shorter than a DNS header", n);
    unsigned id = be16(b), flags = be16(b + 2), qd = be16(b + 4), an = be16(b + 6);
    unsigned qr = flags >> 15, opcode = (flags >> 11) & 0xF, rcode = flags & 0xF;
    if (opcode > 6) return PyErr_Format(WireError, "opcode %u is not assigned", opcode);
    PyObject *key = NULL, *qtype = NULL, *query = NULL, *ans = NULL, *types = NULL, *ttls = NULL;
    Py_ssize_t off = 12;
    if (qd) {
        Py_ssize_t end, tlen, after;
        int plain = question_end(b, n, 12, &end, &e);
        if (plain < 0) return (raise_err(&e), NULL);
        if (!plain || !qr) {  /* a query's name, or a compressed question: read (and check) it */
            if (read_name(b, n, 12, text, &tlen, &off, &e) < 0) return (raise_err(&e), NULL);
            key = plain ? lower_bytes(b + 12, off - 12) : lower_str(text, tlen);
        } else {  /* a response's uncompressed question: the key is its wire bytes */
            off = end;
            if ((end - 12) + 1 > MAX_NAME)
                return PyErr_Format(WireError, "name longer than any DNS name");
            if (read_name(b, n, 12, text, &tlen, &after, &e) < 0) return (raise_err(&e), NULL);
            key = lower_bytes(b + 12, end - 12);
        }
        if (key == NULL) return NULL;
        query = ascii_str(text, tlen);
        if (query == NULL) goto fail;
        if (off + 4 > n) {
            PyErr_SetString(WireError, "question cut off before its type");
            goto fail;
        }
        qtype = type_name(be16(b + off));
        if (qtype == NULL) goto fail;
        off += 4;
        for (unsigned i = 1; i < qd; i++) {  /* further questions (never seen in practice): skipped */
            if (skip_name(b, n, off, &off, &e) < 0) { raise_err(&e); goto fail; }
            off += 4;
        }
    } else if (n > 12 && !an) {
        return PyErr_Format(WireError, "no question and no answer, but more bytes");
    }
    ans = PyList_New(0);
    types = PyList_New(0);
    ttls = PyList_New(0);
    if (ans == NULL || types == NULL || ttls == NULL) goto fail;
    if (qr && an && answers(b, n, off, an, ans, types, ttls, text) < 0) goto fail;
    if (key == NULL) { key = Py_None; Py_INCREF(key); }
    if (qtype == NULL) { qtype = Py_None; Py_INCREF(qtype); }
    if (query == NULL) { query = Py_None; Py_INCREF(query); }
    return Py_BuildValue("(IIIINNNNNN)", id, qr, opcode, rcode, key, qtype, query, ans, types, ttls);
fail:
    Py_XDECREF(key); Py_XDECREF(qtype); Py_XDECREF(query);
    Py_XDECREF(ans); Py_XDECREF(types); Py_XDECREF(ttls);
    return NULL;
}

static int span(Py_buffer *view, Py_ssize_t *start, Py_ssize_t *end) {
    if (*end < 0 || *end > view->len) *end = view->len;
    if (*start < 0) *start = 0;
    if (*start > *end) *start = *end;
    return 0;
}

static PyObject *py_parse(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start = 0, end = -1;
    if (!PyArg_ParseTuple(args, "y*|nn", &view, &start, &end)) return NULL;
    span(&view, &start, &end);
    PyObject *r = parse_message((const uint8_t *)view.buf + start, end - start);
    PyBuffer_Release(&view);
    return r;
}

static PyObject *py_read_name(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t off, tlen, after;
    char text[TEXT_MAX];
    err_t e;
    if (!PyArg_ParseTuple(args, "y*n", &view, &off)) return NULL;
    if (off < 0) off = 0;
    int r = read_name((const uint8_t *)view.buf, view.len, off, text, &tlen, &after, &e);
    PyBuffer_Release(&view);
    if (r < 0) return (raise_err(&e), NULL);
    return Py_BuildValue("(Nn)", ascii_str(text, tlen), after);
}

/* _l4_in_place: the frame at b[p:end] sliced when it is TCP or UDP on port 53 (1), else 0. */
typedef struct {
    unsigned proto, sport, dport;
    unsigned long seq, flags;
    Py_ssize_t from, stop; /* the payload b[from:stop] */
    const uint8_t *src, *dst; /* the packed addresses */
    int alen;                 /* 4 or 16 */
} frame_t;

/* Address text and port numbers, made once each: a capture has few addresses (a DNS-heavy one: a
 * client and its resolver), and a string that is reused keeps its hash for the pairing's keys. */
#define ADDRESSES 256
static struct { uint8_t raw[16]; int len; PyObject *text; } addresses[ADDRESSES];
static PyObject *ports[65536];

static PyObject *address(const uint8_t *raw, int len) {
    unsigned h = 0;
    for (int i = 0; i < len; i++) h = h * 31 + raw[i];
    h = (h ^ (h >> 8) ^ (h >> 16)) % ADDRESSES;
    if (addresses[h].text == NULL || addresses[h].len != len || memcmp(addresses[h].raw, raw, (size_t)len) != 0) {
        char s[INET6_ADDRSTRLEN];
        int k;
        if (len == 4) {
            k = snprintf(s, sizeof s, "%u.%u.%u.%u", raw[0], raw[1], raw[2], raw[3]);
        } else {
            if (inet_ntop(AF_INET6, raw, s, sizeof s) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
            k = (int)strlen(s);
        }
        PyObject *text = ascii_str(s, k);
        if (text == NULL) return NULL;
        Py_XSETREF(addresses[h].text, text);
        memcpy(addresses[h].raw, raw, (size_t)len);
        addresses[h].len = len;
    }
    Py_INCREF(addresses[h].text);
    return addresses[h].text;
}

static PyObject *port(unsigned n) {
    n &= 0xFFFF;
    if (ports[n] == NULL && (ports[n] = PyLong_FromUnsignedLong(n)) == NULL) return NULL;
    Py_INCREF(ports[n]);
    return ports[n];
}

static int slice(const uint8_t *b, Py_ssize_t p, Py_ssize_t end, frame_t *f) {
    if (end - p < 34) return 0;
    Py_ssize_t off = p + 14, l4;
    unsigned eth = be16(b + p + 12);
    while (eth == 0x8100 || eth == 0x88A8) {  /* VLAN tags */
        if (off + 4 > end) return 0;
        eth = be16(b + off + 2);
        off += 4;
    }
    if (eth == 0x0800) {
        if (end < off + 28) return 0;
        f->proto = b[off + 9];
        if ((f->proto != 17 && f->proto != 6) || (b[off + 6] & 0x1F) || b[off + 7]) return 0;
        l4 = off + (b[off] & 0x0F) * 4;
        if (l4 + 4 > end) return 0;
        f->sport = be16(b + l4); f->dport = be16(b + l4 + 2);
        if (f->sport != 53 && f->dport != 53) return 0;
        unsigned total = be16(b + off + 2);
        f->stop = total ? (off + total < end ? off + total : end) : end;
        f->src = b + off + 12; f->dst = b + off + 16; f->alen = 4;
    } else if (eth == 0x86DD) {
        if (end < off + 48) return 0;
        f->proto = b[off + 6];
        if (f->proto != 17 && f->proto != 6) return 0;
        l4 = off + 40;
        f->sport = be16(b + l4); f->dport = be16(b + l4 + 2);
        if (f->sport != 53 && f->dport != 53) return 0;
        f->stop = l4 + be16(b + off + 4);
        if (f->stop > end) f->stop = end;
        f->src = b + off + 8; f->dst = b + off + 24; f->alen = 16;
    } else {
        return 0;
    }
    f->seq = 0; f->flags = 0;
    if (f->proto == 17) {
        f->from = l4 + 8;
    } else {
        if (l4 + 14 > end) return 0;
        f->from = l4 + (b[l4 + 12] >> 4) * 4;
        f->seq = (unsigned long)b[l4 + 4] << 24 | (unsigned long)b[l4 + 5] << 16 | (unsigned long)b[l4 + 6] << 8 | b[l4 + 7];
        f->flags = b[l4 + 13];
    }
    if (f->from > f->stop) f->from = f->stop;
    return 1;
}

/* (proto, src, dst, sport, dport, payload, seq, flags) */
static PyObject *frame_tuple(const uint8_t *b, const frame_t *f) {
    PyObject *name = f->proto == 17 ? str_udp : str_tcp;
    Py_INCREF(name);
    return Py_BuildValue("(NNNNNy#kk)", name, address(f->src, f->alen), address(f->dst, f->alen), port(f->sport),
                         port(f->dport), (const char *)b + f->from,
                         f->stop - f->from, f->seq, f->flags);
}

static PyObject *l4(const uint8_t *b, Py_ssize_t p, Py_ssize_t end) {
    frame_t f;
    if (!slice(b, p, end, &f)) Py_RETURN_NONE;
    return frame_tuple(b, &f);
}

/* _Decoder.message: one message to a row. Queries wait in ``pending`` (key: client, port,
 * server, port, id, question) for their response; a query seen again pushes the waiting one out
 * as a row of its own; a response completes its query's row or makes a row alone. Rows are lists
 * in _dns_packets._FIELDS order. Returns 0, 1 when the bytes are not DNS (WireError set), -1 on
 * another error. */
enum { F_TS, F_ORIG_H, F_ORIG_P, F_RESP_H, F_RESP_P, F_PROTO, F_TRANS_ID, F_QUERY, F_QTYPE, F_RCODE, F_ANSWERS,
       F_ANSWER_TYPES, F_TTLS, F_QUERY_BYTES, F_ANSWER_BYTES, N_FIELDS };

static int message(PyObject *pending, PyObject *rows, PyObject *us, PyObject *proto, PyObject *src,
                   PyObject *sport, PyObject *dst, PyObject *dport, const uint8_t *payload, Py_ssize_t n) {
    PyObject *m = parse_message(payload, n);
    if (m == NULL) return PyErr_ExceptionMatches(WireError) ? 1 : -1;
    /* (id, qr, opcode, rcode, key, qtype, query, answers, answer_types, ttls) */
    PyObject *id = PyTuple_GET_ITEM(m, 0), *low = PyTuple_GET_ITEM(m, 4), *qtype = PyTuple_GET_ITEM(m, 5),
             *query = PyTuple_GET_ITEM(m, 6);
    int qr = PyLong_AsLong(PyTuple_GET_ITEM(m, 1)) != 0;  /* a 0 or 1 made by parse_message */
    PyObject *key = NULL, *row = NULL, *size = NULL;
    int rc = -1;
    if (!qr) {
        key = PyTuple_Pack(6, src, sport, dst, dport, id, low);
        if (key == NULL) goto done;
        PyObject *old = PyDict_GetItemWithError(pending, key); /* borrowed */
        if (old == NULL && PyErr_Occurred()) goto done;
        if (old != NULL) {  /* the same query again (a retransmission): a row of its own */
            if (PyList_Append(rows, old) < 0 || PyDict_DelItem(pending, key) < 0) goto done;
        }
        row = PyList_New(N_FIELDS);
        size = PyLong_FromSsize_t(n);
        if (row == NULL || size == NULL) goto done;
        PyObject *vals[N_FIELDS] = {us, src, sport, dst, dport, proto, id, query, qtype, Py_None, Py_None,
                                    Py_None, Py_None, size, Py_None};
        for (int i = 0; i < N_FIELDS; i++) { Py_INCREF(vals[i]); PyList_SET_ITEM(row, i, vals[i]); }
        if (PyDict_SetItem(pending, key, row) < 0) goto done;
        rc = 0;
        goto done;
    }
    key = PyTuple_Pack(6, dst, dport, src, sport, id, low);
    if (key == NULL) goto done;
    row = PyDict_GetItemWithError(pending, key);
    if (row == NULL && PyErr_Occurred()) goto done;
    if (row != NULL) {
        Py_INCREF(row);
        if (PyDict_DelItem(pending, key) < 0) goto done;
    } else {
        row = PyList_New(N_FIELDS);
        if (row == NULL) goto done;
        PyObject *vals[N_FIELDS] = {us, dst, dport, src, sport, proto, id, query, qtype, Py_None, Py_None,
                                    Py_None, Py_None, Py_None, Py_None};
        for (int i = 0; i < N_FIELDS; i++) { Py_INCREF(vals[i]); PyList_SET_ITEM(row, i, vals[i]); }
    }
    PyObject *rcode = rcode_name((unsigned)PyLong_AsLong(PyTuple_GET_ITEM(m, 3)));
    size = PyLong_FromSsize_t(n);
    if (rcode == NULL || size == NULL) { Py_XDECREF(rcode); goto done; }
    /* row.update(rcode=..., answers=..., answer_types=..., ttls=..., answer_bytes=...) */
    static const int at[5] = {F_RCODE, F_ANSWERS, F_ANSWER_TYPES, F_TTLS, F_ANSWER_BYTES};
    PyObject *vals[5] = {rcode, PyTuple_GET_ITEM(m, 7), PyTuple_GET_ITEM(m, 8), PyTuple_GET_ITEM(m, 9), size};
    for (int i = 1; i < 5; i++) Py_INCREF(vals[i]);  /* rcode's own reference goes to the row */
    for (int i = 0; i < 5; i++) PyList_SetItem(row, at[i], vals[i]);  /* in range: cannot fail */
    if (PyList_Append(rows, row) < 0) goto done;
    rc = 0;
done:
    Py_DECREF(m);
    Py_XDECREF(key);
    Py_XDECREF(row);
    Py_XDECREF(size);
    return rc;
}

static PyObject *py_message(PyObject *self, PyObject *args) {
    PyObject *pending, *rows, *us, *frame;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "O!O!OO!y*", &PyDict_Type, &pending, &PyList_Type, &rows, &us, &PyTuple_Type,
                          &frame, &view))
        return NULL;
    if (PyTuple_GET_SIZE(frame) < 5) {
        PyBuffer_Release(&view);
        return PyErr_Format(PyExc_TypeError, "a frame tuple (proto, src, dst, sport, dport, ...)");
    }
    int r = message(pending, rows, us, PyTuple_GET_ITEM(frame, 0), PyTuple_GET_ITEM(frame, 1),
                    PyTuple_GET_ITEM(frame, 3), PyTuple_GET_ITEM(frame, 2), PyTuple_GET_ITEM(frame, 4),
                    (const uint8_t *)view.buf, view.len);
    PyBuffer_Release(&view);
    if (r < 0) return NULL;
    if (r == 0) Py_RETURN_NONE;
    PyObject *type, *value, *tb;  /* not DNS: the reason, for the caller's counted skip */
    PyErr_Fetch(&type, &value, &tb);
    PyObject *reason = value ? PyObject_Str(value) : PyUnicode_FromString("not DNS");
    Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(tb);
    return reason;
}

/* One frame of a capture: TCP to ``on_tcp`` (reassembly, in Python), a UDP message paired here
 * (``on_skip`` with the reason when it is not DNS); with ``mine`` (a worker's filter) only the
 * packets it accepts. 1 when the frame is not TCP/UDP on port 53, 0 when done, -1 on an error. */
static int frame(const uint8_t *b, Py_ssize_t s, Py_ssize_t e, double t, long long number, PyObject *pending,
                 PyObject *rows, PyObject *on_tcp, PyObject *on_skip, PyObject *mine) {
    frame_t f;
    if (!slice(b, s, e, &f)) return 1;
    PyObject *tuple = NULL;
    if (mine != Py_None) {
        tuple = frame_tuple(b, &f);
        if (tuple == NULL) return -1;
        PyObject *r = PyObject_CallOneArg(mine, tuple);
        int yes = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (yes <= 0) { Py_DECREF(tuple); return yes; }
    }
    if (f.proto == 6) {
        if (tuple == NULL && (tuple = frame_tuple(b, &f)) == NULL) return -1;
        PyObject *r = PyObject_CallFunction(on_tcp, "dLO", t, number, tuple);
        Py_DECREF(tuple);
        if (r == NULL) return -1;
        Py_DECREF(r);
        return 0;
    }
    Py_XDECREF(tuple);
    if (f.stop <= f.from) return 0;  /* an empty UDP payload: nothing to decode */
    PyObject *us = PyLong_FromLongLong((long long)(t * 1000000.0));
    PyObject *src = address(f.src, f.alen), *dst = address(f.dst, f.alen);
    PyObject *sport = port(f.sport), *dport = port(f.dport);
    int r = -1;
    if (us && src && dst && sport && dport)
        r = message(pending, rows, us, str_udp, src, sport, dst, dport, b + f.from, f.stop - f.from);
    if (r == 1) {  /* not DNS: the caller reports it */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *reason = value ? PyObject_Str(value) : PyUnicode_FromString("not DNS");
        Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(tb);
        PyObject *res = reason == NULL ? NULL :
            PyObject_CallFunction(on_skip, "L(OOOOO)O", number, str_udp, src, dst, sport, dport, reason);
        Py_XDECREF(reason);
        r = res == NULL ? -1 : 0;
        Py_XDECREF(res);
    }
    Py_XDECREF(us); Py_XDECREF(src); Py_XDECREF(dst); Py_XDECREF(sport); Py_XDECREF(dport);
    return r;
}

static inline uint32_t u32(const uint8_t *p, int little) {
    return little ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
                  : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* _dns_packets._scan_classic: every record of a classic pcap of Ethernet frames (``mm``: its
 * bytes) walked and each frame decoded (``frame``). Returns (records, time of the last record or
 * None, offset of a record cut short or None, [(number, start, end, time) of each frame that is
 * not DNS but may be ARP, when ``arp``]). */
static PyObject *py_scan(PyObject *self, PyObject *args) {
    PyObject *pending, *rows, *on_tcp, *on_skip, *mine, *result = NULL, *arps = NULL;
    Py_buffer mm;
    int want_arp;
    if (!PyArg_ParseTuple(args, "O!O!y*OOOp", &PyDict_Type, &pending, &PyList_Type, &rows, &mm, &on_tcp, &on_skip,
                          &mine, &want_arp))
        return NULL;
    const uint8_t *b = mm.buf;
    Py_ssize_t size = mm.len, off = 24, cut = -1;
    long long records = 0;
    double t = 0;
    if (size < 24) {
        PyErr_SetString(PyExc_ValueError, "scan: not a classic pcap");
        goto out;
    }
    int little = (b[0] == 0xd4 && b[1] == 0xc3 && b[2] == 0xb2 && b[3] == 0xa1) ||
                 (b[0] == 0x4d && b[1] == 0x3c && b[2] == 0xb2 && b[3] == 0xa1);
    int nano = (b[0] == 0x4d && b[1] == 0x3c) || (b[0] == 0xa1 && b[1] == 0xb2 && b[2] == 0x3c && b[3] == 0x4d);
    double scale = nano ? 1e9 : 1e6;
    arps = PyList_New(0);
    if (arps == NULL) goto out;
    while (off < size) {
        if (off + 16 > size) { cut = off; break; }
        Py_ssize_t start = off + 16, end = start + (Py_ssize_t)u32(b + off + 8, little);
        if (end > size) { cut = off; break; }
        t = (double)u32(b + off, little) + (double)u32(b + off + 4, little) / scale;
        records++;
        int r = frame(b, start, end, t, records, pending, rows, on_tcp, on_skip, mine);
        if (r < 0) goto out;
        if (r == 1 && want_arp && end - start >= 42 &&
            ((b[start + 12] == 8 && b[start + 13] == 6) || (b[start + 12] == 0x81 && b[start + 13] == 0) ||
             (b[start + 12] == 0x88 && b[start + 13] == 0xA8))) {
            PyObject *x = Py_BuildValue("(Lnnd)", records, start, end, t);
            if (x == NULL || PyList_Append(arps, x) < 0) { Py_XDECREF(x); goto out; }
            Py_DECREF(x);
        }
        off = end;
    }
    PyObject *last = records ? PyFloat_FromDouble(t) : (Py_INCREF(Py_None), Py_None);
    PyObject *at = cut >= 0 ? PyLong_FromSsize_t(cut) : (Py_INCREF(Py_None), Py_None);
    if (last && at) result = Py_BuildValue("(LNNO)", records, last, at, arps);
    else { Py_XDECREF(last); Py_XDECREF(at); }
out:
    Py_XDECREF(arps);
    PyBuffer_Release(&mm);
    return result;
}

static PyObject *py_l4(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start = 0, end = -1;
    if (!PyArg_ParseTuple(args, "y*|nn", &view, &start, &end)) return NULL;
    span(&view, &start, &end);
    PyObject *r = l4((const uint8_t *)view.buf, start, end);
    PyBuffer_Release(&view);
    return r;
}

/* The rows (lists of equal length) as columns: one list per field. */
static PyObject *py_columns(PyObject *self, PyObject *args) {
    PyObject *rows;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &rows, &width)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyList_Check(row) || PyList_GET_SIZE(row) != width)
            return PyErr_Format(PyExc_ValueError, "columns: row %zd is not a list of %zd", r, width);
    }
    PyObject *cols = PyList_New(width);
    if (cols == NULL) return NULL;
    for (Py_ssize_t k = 0; k < width; k++) {
        PyObject *col = PyList_New(n);
        if (col == NULL) { Py_DECREF(cols); return NULL; }
        for (Py_ssize_t r = 0; r < n; r++) {
            PyObject *v = PyList_GET_ITEM(PyList_GET_ITEM(rows, r), k);
            Py_INCREF(v);
            PyList_SET_ITEM(col, r, v);
        }
        PyList_SET_ITEM(cols, k, col);
    }
    return cols;
}

static PyObject *py_set_names(PyObject *self, PyObject *args) {
    PyObject *types, *rcodes;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &types, &PyDict_Type, &rcodes)) return NULL;
    Py_INCREF(types);
    Py_XSETREF(type_names, types);
    Py_INCREF(rcodes);
    Py_XSETREF(rcode_names, rcodes);
    for (int i = 0; i < 65536; i++) Py_CLEAR(type_cache[i]);
    for (int i = 0; i < 16; i++) Py_CLEAR(rcode_cache[i]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse", py_parse, METH_VARARGS,
     "parse(buf, start=0, end=len(buf)): the message buf[start:end] as (id, qr, opcode, rcode, key, "
     "qtype, query, answers, answer_types, ttls); WireError with the reason when it is not DNS."},
    {"read_name", py_read_name, METH_VARARGS, "read_name(buf, off): (escaped name, offset after it)."},
    {"l4", py_l4, METH_VARARGS,
     "l4(buf, start=0, end=len(buf)): the Ethernet frame buf[start:end] as (proto, src, dst, sport, dport, "
     "payload, seq, flags) when it is TCP or UDP on port 53, else None."},
    {"message", py_message, METH_VARARGS,
     "message(pending, rows, us, frame, payload): one message paired into rows (_dns_packets._Decoder); "
     "None, or the reason the payload is not DNS."},
    {"scan", py_scan, METH_VARARGS,
     "scan(pending, rows, mm, on_tcp, on_skip, mine, arp): every frame of the classic pcap mm decoded; "
     "(records, last time, cut offset, ARP candidates)."},
    {"columns", py_columns, METH_VARARGS, "columns(rows, width): the rows (lists of width values) as width lists."},
    {"set_names", py_set_names, METH_VARARGS, "set_names(types, rcodes): record type and rcode mnemonics."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_abfluss_dns",
                                    "The DNS message parser of abfluss.readers._dns_wire (C).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__abfluss_dns(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    WireError = PyErr_NewExceptionWithDoc("_abfluss_dns.WireError",
                                          "The bytes are not a DNS message; the text is the reason, for a counted skip.",
                                          PyExc_ValueError, NULL);
    str_udp = PyUnicode_InternFromString("udp");
    str_tcp = PyUnicode_InternFromString("tcp");
    if (WireError == NULL || str_udp == NULL || str_tcp == NULL || PyModule_AddObjectRef(m, "WireError", WireError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

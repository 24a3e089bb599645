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

/* _l4_in_place: the frame at b[p:end] sliced to (proto, src, dst, sport, dport, payload, seq,
 * flags) when it is TCP or UDP on port 53; None otherwise. */
static PyObject *l4(const uint8_t *b, Py_ssize_t p, Py_ssize_t end) {
    if (end - p < 34) Py_RETURN_NONE;
    Py_ssize_t off = p + 14;
    unsigned eth = be16(b + p + 12);
    while (eth == 0x8100 || eth == 0x88A8) {  /* VLAN tags */
        if (off + 4 > end) Py_RETURN_NONE;
        eth = be16(b + off + 2);
        off += 4;
    }
    unsigned proto, sport, dport;
    Py_ssize_t l4, stop;
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    if (eth == 0x0800) {
        if (end < off + 28) Py_RETURN_NONE;
        proto = b[off + 9];
        if ((proto != 17 && proto != 6) || (b[off + 6] & 0x1F) || b[off + 7]) Py_RETURN_NONE;
        l4 = off + (b[off] & 0x0F) * 4;
        if (l4 + 4 > end) Py_RETURN_NONE;
        sport = be16(b + l4); dport = be16(b + l4 + 2);
        if (sport != 53 && dport != 53) Py_RETURN_NONE;
        unsigned total = be16(b + off + 2);
        stop = total ? (off + total < end ? off + total : end) : end;
        snprintf(src, sizeof src, "%u.%u.%u.%u", b[off + 12], b[off + 13], b[off + 14], b[off + 15]);
        snprintf(dst, sizeof dst, "%u.%u.%u.%u", b[off + 16], b[off + 17], b[off + 18], b[off + 19]);
    } else if (eth == 0x86DD) {
        if (end < off + 48) Py_RETURN_NONE;
        proto = b[off + 6];
        if (proto != 17 && proto != 6) Py_RETURN_NONE;
        l4 = off + 40;
        sport = be16(b + l4); dport = be16(b + l4 + 2);
        if (sport != 53 && dport != 53) Py_RETURN_NONE;
        stop = l4 + be16(b + off + 4);
        if (stop > end) stop = end;
        if (inet_ntop(AF_INET6, b + off + 8, src, sizeof src) == NULL ||
            inet_ntop(AF_INET6, b + off + 24, dst, sizeof dst) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
    } else {
        Py_RETURN_NONE;
    }
    Py_ssize_t from;
    unsigned long seq = 0, tflags = 0;
    if (proto == 17) {
        from = l4 + 8;
    } else {
        if (l4 + 14 > end) Py_RETURN_NONE;
        from = l4 + (b[l4 + 12] >> 4) * 4;
        seq = (unsigned long)b[l4 + 4] << 24 | (unsigned long)b[l4 + 5] << 16 | (unsigned long)b[l4 + 6] << 8 | b[l4 + 7];
        tflags = b[l4 + 13];
    }
    if (from > stop) from = stop;
    PyObject *name = proto == 17 ? str_udp : str_tcp;
    Py_INCREF(name);
    return Py_BuildValue("(NNNIIy#kk)", name, ascii_str(src, (Py_ssize_t)strlen(src)),
                         ascii_str(dst, (Py_ssize_t)strlen(dst)), sport, dport, (const char *)b + from,
                         stop - from, seq, tflags);
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

static PyObject *py_set_type_names(PyObject *self, PyObject *names) {
    if (!PyDict_Check(names)) return PyErr_Format(PyExc_TypeError, "a dict of type numbers and names");
    Py_INCREF(names);
    Py_XSETREF(type_names, names);
    for (int i = 0; i < 65536; i++) Py_CLEAR(type_cache[i]);
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
    {"set_type_names", py_set_type_names, METH_O, "set_type_names(dict): record type mnemonics."},
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

/* eve.json lines into Arrow buffers, in C: what pyarrow.json.read_json gives of a block of eve
 * lines with the reader's explicit schema (readers/_eve_fast.SCHEMA, other keys ignored), at a
 * fraction of its cost (its JSON reader was over half of the eve reader's CPU time).
 *
 * It is strictly an accelerator of pyarrow's reader, never a second judge of the input: it takes
 * only lines of plain, valid JSON (one object per line, keys without escapes, each known key once,
 * known values of exactly the schema's JSON type, no null at a known place, numbers without an
 * exponent and of at most MAX_NUMBER characters, no NaN or Infinity, nesting below MAX_DEPTH) and
 * for any other block returns None, and then pyarrow's reader parses it as before. So every
 * block it takes is one pyarrow takes, with the same table (tests/test_eve_json_c.py checks both
 * on real, generated and mutated lines). Bytes >= 0x80 pass through unchecked, as in pyarrow
 * (the caller validates the table's UTF-8).
 *
 * The schema is set once (set_schema) as a flat pre-order list of nodes; parse() runs without
 * the GIL and returns, per node, (slots, validity bitmap, offsets, data) as bytes objects. */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* memmem */
#pragma GCC optimize("O3") /* vectorised byte counts (count) */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES 128
#define MAX_CHILDREN 64
#define MAX_DEPTH 500
#define MAX_NUMBER 30

enum { K_STR = 's', K_INT = 'i', K_BOOL = 'b', K_OBJ = 'o', K_LIST = 'l' };

typedef struct {
    int kind, parent;
    char name[64];
    Py_ssize_t name_len;
    int n_children;
    int children[MAX_CHILDREN];
} node_t;

static node_t nodes[MAX_NODES];
static int n_nodes = 0;

/* An object's children by key hash (KEY_HASH): up to two candidates a bucket, -1 for none. */
#define KEY_HASH(k, n) (((size_t)(n) * 31u + (size_t)(k)[0] * 7u + (size_t)(k)[(n) - 1]) & 127u)
static int8_t keymap[MAX_NODES][128][2];

/* Bytes a string runs on without a look: not '"', '\\' or a control character. */
static uint8_t plain[256];

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

typedef struct {
    Py_ssize_t slots, cap; /* slots written; slots the buffers below hold */
    uint8_t *valid;        /* bitmap */
    int32_t *offsets;      /* slots + 1: strings, lists */
    uint8_t *values;       /* int64 per slot, or a bitmap of booleans */
    buf_t data;            /* string bytes */
} col_t;

typedef struct {
    const uint8_t *p, *end;
    col_t *cols;
    int depth;
} state_t;

#define BAIL (-1)

static int put_bytes(buf_t *b, const void *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (p == NULL) return BAIL;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static void *grown(void *p, size_t old, size_t size) {
    uint8_t *q = realloc(p, size);
    if (q != NULL && size > old) memset(q + old, 0, size - old);
    return q;
}

/* Room for slot ``c->slots`` (and the ones after it up to ``want``, at least). */
static int room(col_t *c, int kind, Py_ssize_t want) {
    if (want <= c->cap) return 0;
    Py_ssize_t old = c->cap, cap = old ? old : 64;
    while (cap < want) cap *= 2;
    void *v = grown(c->valid, (size_t)(old + 7) / 8, (size_t)(cap + 7) / 8);
    if (v == NULL) return BAIL;
    c->valid = v;
    if (kind == K_STR || kind == K_LIST) {
        v = grown(c->offsets, old ? (size_t)(old + 1) * 4 : 0, (size_t)(cap + 1) * 4);
        if (v == NULL) return BAIL;
        c->offsets = v;
    } else if (kind == K_INT || kind == K_BOOL) {
        size_t o = kind == K_INT ? (size_t)old * 8 : (size_t)(old + 7) / 8;
        size_t n = kind == K_INT ? (size_t)cap * 8 : (size_t)(cap + 7) / 8;
        v = grown(c->values, o, n);
        if (v == NULL) return BAIL;
        c->values = v;
    }
    c->cap = cap;
    return 0;
}

#define SET_BIT(bits, i) ((bits)[(i) >> 3] |= (uint8_t)(1u << ((i) & 7)))

/* Null slots up to (not including) ``idx``: a slot no value was written to is null (its validity
 * bit and value are zero from the start; only offsets need the previous end repeated). Room for
 * slot ``idx`` too. */
static inline int fill(col_t *c, int kind, Py_ssize_t idx) {
    if (idx >= c->cap && room(c, kind, idx + 1)) return BAIL;
    if (c->slots < idx) {
        if (kind == K_STR || kind == K_LIST) {
            int32_t last = c->offsets[c->slots];
            for (Py_ssize_t i = c->slots + 1; i <= idx; i++) c->offsets[i] = last;
        }
        c->slots = idx;
    }
    return 0;
}

static inline int same(const char *a, const uint8_t *b, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if ((uint8_t)a[i] != b[i]) return 0;
    return 1;
}

static inline void ws(state_t *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r')) s->p++;
}

static int hex4(const uint8_t *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return BAIL;
    }
    *out = v;
    return 0;
}

/* A string at s->p (after its opening quote): unescaped into ``out`` (NULL: only checked). */
static int string(state_t *s, buf_t *out) {
    const uint8_t *p = s->p, *end = s->end;
    for (;;) {
        const uint8_t *run = p;
        while (p < end && plain[*p]) p++;
        if (out && p > run && put_bytes(out, run, (size_t)(p - run))) return BAIL;
        if (p >= end || *p < 0x20) return BAIL;
        if (*p == '"') {
            s->p = p + 1;
            return 0;
        }
        /* an escape */
        if (p + 1 >= end) return BAIL;
        uint8_t e = p[1], c;
        p += 2;
        switch (e) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (end - p < 4 || hex4(p, &u)) return BAIL;
            p += 4;
            if (u == 0 || (u >= 0xDC00 && u <= 0xDFFF)) return BAIL;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return BAIL;
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            uint8_t utf[4];
            size_t n;
            if (u < 0x80) { utf[0] = (uint8_t)u; n = 1; }
            else if (u < 0x800) { utf[0] = 0xC0 | (u >> 6); utf[1] = 0x80 | (u & 0x3F); n = 2; }
            else if (u < 0x10000) {
                utf[0] = 0xE0 | (u >> 12); utf[1] = 0x80 | ((u >> 6) & 0x3F); utf[2] = 0x80 | (u & 0x3F); n = 3;
            } else {
                utf[0] = 0xF0 | (u >> 18); utf[1] = 0x80 | ((u >> 12) & 0x3F);
                utf[2] = 0x80 | ((u >> 6) & 0x3F); utf[3] = 0x80 | (u & 0x3F); n = 4;
            }
            if (out && put_bytes(out, utf, n)) return BAIL;
            continue;
        }
        default: return BAIL;
        }
        if (out && put_bytes(out, &c, 1)) return BAIL;
    }
}

/* A JSON number at s->p: its integer value in ``*v`` when it is an integer within int64
 * (``*is_int`` 1), else checked only. */
static int number(state_t *s, int64_t *v, int *is_int) {
    const uint8_t *p = s->p, *start = p, *end = s->end;
    int neg = 0;
    uint64_t acc = 0;
    int overflow = 0;
    *is_int = 1;
    if (p < end && *p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') return BAIL;
    if (*p == '0') p++;
    else
        while (p < end && *p >= '0' && *p <= '9') {
            unsigned d = *p++ - '0';
            if (acc > (UINT64_MAX - d) / 10) overflow = 1;
            else acc = acc * 10 + d;
        }
    if (p < end && *p == '.') {
        *is_int = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') return BAIL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) return BAIL; /* pyarrow refuses what overflows a double */
    if (p - start > MAX_NUMBER) return BAIL;
    if (*is_int) {
        if (overflow || acc > (uint64_t)INT64_MAX + neg) *is_int = 0;
        else *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    }
    s->p = p;
    return 0;
}

static int literal(state_t *s, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n)) return BAIL;
    s->p += n;
    return 0;
}

static int skip_value(state_t *s);

/* After an item of an array or object: 1 at its closing bracket, 0 at a comma (both consumed,
 * with the blanks after a comma), BAIL at anything else. */
static int after_item(state_t *s, uint8_t close) {
    ws(s);
    if (s->p >= s->end) return BAIL;
    if (*s->p == close) {
        s->p++;
        return 1;
    }
    if (*s->p != ',') return BAIL;
    s->p++;
    ws(s);
    return 0;
}

static int object(state_t *s, int node, Py_ssize_t idx);

/* A value of a key or list item the schema does not know: checked, not kept. */
static int skip_value(state_t *s) {
    if (s->p >= s->end) return BAIL;
    uint8_t c = *s->p;
    if (c == '"') {
        s->p++;
        return string(s, NULL);
    }
    if (c == '{' || c == '[') {
        if (++s->depth > MAX_DEPTH) return BAIL;
        uint8_t close = c == '{' ? '}' : ']';
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                if (s->p >= s->end || *s->p != '"') return BAIL;
                s->p++;
                if (string(s, NULL)) return BAIL;
                ws(s);
                if (s->p >= s->end || *s->p != ':') return BAIL;
                s->p++;
                ws(s);
            }
            if (skip_value(s)) return BAIL;
            int end = after_item(s, close);
            if (end < 0) return BAIL;
            if (end) {
                s->depth--;
                return 0;
            }
        }
    }
    if (c == 't') return literal(s, "true");
    if (c == 'f') return literal(s, "false");
    if (c == 'n') return literal(s, "null");
    int64_t v;
    int is_int;
    return number(s, &v, &is_int);
}

/* A value for slot ``idx`` of ``node``: exactly the schema's JSON type, never null. */
static int value(state_t *s, int node, Py_ssize_t idx) {
    col_t *c = &s->cols[node];
    const node_t *nd = &nodes[node];
    if (s->p >= s->end) return BAIL;
    uint8_t ch = *s->p;
    if (nd->kind == K_OBJ) {
        if (ch != '{') return BAIL;
        return object(s, node, idx); /* its children first, then its own slot */
    }
    if (fill(c, nd->kind, idx)) return BAIL;
    switch (nd->kind) {
    case K_STR:
        if (ch != '"') return BAIL;
        s->p++;
        if (string(s, &c->data) || c->data.len > INT32_MAX) return BAIL;
        c->offsets[idx + 1] = (int32_t)c->data.len;
        break;
    case K_INT: {
        int64_t v;
        int is_int;
        if (ch != '-' && (ch < '0' || ch > '9')) return BAIL;
        if (number(s, &v, &is_int) || !is_int) return BAIL;
        memcpy(c->values + (size_t)idx * 8, &v, 8);
        break;
    }
    case K_BOOL:
        if (ch == 't') {
            if (literal(s, "true")) return BAIL;
            SET_BIT(c->values, idx);
        } else if (ch == 'f') {
            if (literal(s, "false")) return BAIL;
        } else
            return BAIL;
        break;
    case K_LIST: {
        int item = nd->children[0];
        col_t *items = &s->cols[item];
        if (ch != '[' || ++s->depth > MAX_DEPTH) return BAIL;
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == ']') s->p++;
        else
            for (;;) {
                if (value(s, item, items->slots)) return BAIL;
                int end = after_item(s, ']');
                if (end < 0) return BAIL;
                if (end) break;
            }
        s->depth--;
        if (items->slots > INT32_MAX) return BAIL;
        c->offsets[idx + 1] = (int32_t)items->slots;
        break;
    }
    default:
        return BAIL;
    }
    SET_BIT(c->valid, idx);
    c->slots = idx + 1;
    return 0;
}

/* An object at s->p ('{') as slot ``idx`` of ``node``: known keys into the same slot of their
 * children (the others stay null), unknown keys checked and ignored. */
static int object(state_t *s, int node, Py_ssize_t idx) {
    const node_t *nd = &nodes[node];
    uint64_t seen = 0;
    if (++s->depth > MAX_DEPTH) return BAIL;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') s->p++;
    else
        for (;;) {
            if (s->p >= s->end || *s->p != '"') return BAIL;
            const uint8_t *key = ++s->p;
            while (s->p < s->end && plain[*s->p]) s->p++;
            if (s->p >= s->end || *s->p != '"') return BAIL; /* an escape in a key: pyarrow decides */
            Py_ssize_t klen = s->p - key;
            s->p++;
            ws(s);
            if (s->p >= s->end || *s->p != ':') return BAIL;
            s->p++;
            ws(s);
            int found = -1;
            if (klen > 0) {
                const int8_t *cand = keymap[node][KEY_HASH(key, klen)];
                for (int j = 0; j < 2 && cand[j] >= 0; j++) {
                    const node_t *ch = &nodes[nd->children[cand[j]]];
                    if (ch->name_len == klen && same(ch->name, key, klen)) {
                        found = cand[j];
                        break;
                    }
                }
            }
            if (found < 0) {
                if (skip_value(s)) return BAIL;
            } else {
                if (seen & (1ull << found)) return BAIL; /* pyarrow: "specified twice" */
                seen |= 1ull << found;
                if (value(s, nd->children[found], idx)) return BAIL;
            }
            int end = after_item(s, '}');
            if (end < 0) return BAIL;
            if (end) break;
        }
    s->depth--;
    col_t *c = &s->cols[node];
    if (fill(c, K_OBJ, idx)) return BAIL;
    SET_BIT(c->valid, idx);
    c->slots = idx + 1;
    return 0;
}

/* Every line of data[:end] (each ending in a newline) as one object of the root (node 0). */
static int lines(const uint8_t *data, size_t end, col_t *cols, Py_ssize_t *rows) {
    const uint8_t *p = data, *stop = data + end;
    Py_ssize_t n = 0;
    while (p < stop) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL) return BAIL;
        state_t s = {p, nl, cols, 0};
        ws(&s);
        if (s.p >= s.end || *s.p != '{' || object(&s, 0, n)) return BAIL;
        ws(&s);
        if (s.p != nl) return BAIL;
        p = nl + 1;
        n++;
    }
    *rows = n;
    return 0;
}

static PyObject *bytes_of(const void *p, size_t n) {
    static const int32_t zero = 0;
    return PyBytes_FromStringAndSize(p ? (const char *)p : (const char *)&zero, (Py_ssize_t)n);
}

/* A column as (slots, validity bitmap, offsets, values: string bytes, int64s or a bitmap). */
static PyObject *column(const col_t *c, int kind) {
    size_t bits = (size_t)(c->slots + 7) / 8;
    size_t offs = kind == K_STR || kind == K_LIST ? (size_t)(c->slots + 1) * 4 : 0;
    PyObject *values = kind == K_STR ? bytes_of(c->data.p, c->data.len)
                       : kind == K_INT ? bytes_of(c->values, (size_t)c->slots * 8)
                       : kind == K_BOOL ? bytes_of(c->values, bits) : bytes_of(NULL, 0);
    return Py_BuildValue("(nNNN)", c->slots, bytes_of(c->valid, bits), bytes_of(c->offsets, offs), values);
}

static int under_list[MAX_NODES]; /* a list's items (or inside them): not one slot per line */

static PyObject *set_schema(PyObject *self, PyObject *arg) {
    /* a list of (parent index or -1, name, kind) in pre-order; node 0 is the root object */
    PyObject *seq = PySequence_Fast(arg, "a list of nodes");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > MAX_NODES) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "bad number of nodes");
        return NULL;
    }
    memset(nodes, 0, sizeof nodes);
    for (Py_ssize_t i = 0; i < n; i++) {
        int parent, kind;
        const char *name;
        Py_ssize_t len;
        memset(keymap[i], 0xff, sizeof keymap[i]);
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "is#C", &parent, &name, &len, &kind))
            goto fail;
        node_t *up = parent >= 0 ? &nodes[parent] : NULL;
        if (len >= 64 || parent >= i || (parent < 0) != (i == 0) ||
            (kind != K_STR && kind != K_INT && kind != K_BOOL && kind != K_OBJ && kind != K_LIST) ||
            (up && (up->n_children >= MAX_CHILDREN || (up->kind != K_OBJ && up->kind != K_LIST) ||
                    (up->kind == K_LIST && up->n_children) || (up->kind == K_OBJ && len == 0))))
            goto bad;
        nodes[i].kind = kind;
        nodes[i].parent = parent;
        memcpy(nodes[i].name, name, (size_t)len);
        nodes[i].name_len = len;
        under_list[i] = up && (up->kind == K_LIST || under_list[parent]);
        if (up == NULL) continue;
        if (up->kind == K_OBJ) {
            int8_t *cand = keymap[parent][KEY_HASH((const uint8_t *)name, len)];
            int j = 0;
            while (j < 2 && cand[j] >= 0) j++;
            if (j == 2) goto bad;
            cand[j] = (int8_t)up->n_children;
        }
        up->children[up->n_children++] = (int)i;
    }
    n_nodes = (int)n;
    Py_DECREF(seq);
    Py_RETURN_NONE;
bad:
    PyErr_SetString(PyExc_ValueError, "bad node");
fail:
    n_nodes = 0;
    Py_DECREF(seq);
    return NULL;
}

static PyObject *parse(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t end;
    if (!PyArg_ParseTuple(args, "y*n", &view, &end)) return NULL;
    if (end < 0 || end > view.len || n_nodes < 1 || nodes[0].kind != K_OBJ) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad end or no schema");
        return NULL;
    }
    col_t *cols = calloc((size_t)n_nodes, sizeof(col_t));
    if (cols == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    int rc = 0;
    Py_ssize_t rows = 0;
    const uint8_t *data = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (const uint8_t *p = data, *stop = data + end; p < stop; rows++) { /* one slot per line */
        const uint8_t *nl = memchr(p, '\n', (size_t)(stop - p));
        p = nl ? nl + 1 : stop;
    }
    for (int i = 0; i < n_nodes && rc == 0; i++)
        if (!under_list[i]) rc = room(&cols[i], nodes[i].kind, rows > 0 ? rows : 1);
    if (rc == 0) rc = lines(data, (size_t)end, cols, &rows);
    /* the null slots after each column's last value: a line's columns have a slot per line, a
     * list's items one per item, and an object's children as many as the object */
    for (int i = 0; i < n_nodes && rc == 0; i++) {
        int up = nodes[i].parent;
        Py_ssize_t len = up < 0 ? rows : nodes[up].kind == K_LIST ? cols[i].slots : cols[up].slots;
        rc = fill(&cols[i], nodes[i].kind, len);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *out = NULL;
    if (rc == 0 && (out = PyList_New(n_nodes)) != NULL)
        for (int i = 0; i < n_nodes; i++) {
            PyObject *item = column(&cols[i], nodes[i].kind);
            if (item == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, i, item);
        }
    for (int i = 0; i < n_nodes; i++) {
        free(cols[i].valid);
        free(cols[i].offsets);
        free(cols[i].values);
        free(cols[i].data.p);
    }
    free(cols);
    if (rc != 0) Py_RETURN_NONE;
    return out;
}

static inline int word_byte(uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static inline int regex_space(uint8_t c) { /* Python's bytes \s */
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* _eve_fast's block test, on data[:end]: the newline positions, or -1 when the block is for the
 * line reader (see check()). */
/* Bytes of d[0:n] equal to c (with ``fold``: (byte | 0x20) == c), in blocks of 255 counted in a
 * byte each: a loop the compiler turns into vector instructions. */
static size_t count(const uint8_t *d, size_t n, uint8_t c, uint8_t fold) {
    size_t total = 0;
    while (n) {
        size_t k = n < 255 ? n : 255;
        uint8_t sum = 0;
        for (size_t i = 0; i < k; i++) sum += (uint8_t)((d[i] | fold) == c);
        total += sum;
        d += k;
        n -= k;
    }
    return total;
}

static Py_ssize_t block_lines(const uint8_t *d, Py_ssize_t end, Py_ssize_t max_openers, int64_t *ends) {
    if (end == 0 || d[end - 1] != '\n') return -1;
    /* ":\s*null\b": a null value (the \s may span lines, as the regular expression's) */
    for (const uint8_t *at = d; (at = memmem(at, (size_t)(d + end - at), "null", 4)) != NULL; at++) {
        Py_ssize_t i = at - d, j = i;
        if (i + 4 < end && word_byte(d[i + 4])) continue;
        while (j > 0 && regex_space(d[j - 1])) j--;
        if (j > 0 && d[j - 1] == ':') return -1;
    }
    Py_ssize_t n = 0, start = 0;
    while (start < end) {
        const uint8_t *nl = memchr(d + start, '\n', (size_t)(end - start));
        Py_ssize_t stop = nl - d;
        if (stop == start || d[start] != '{' || d[stop - 1] != '}') return -1;
        if ((Py_ssize_t)count(d + start, (size_t)(stop - start), 0x7B, 0x20) > max_openers) /* '{' or '[' */
            return -1;
        ends[n++] = stop;
        start = stop + 1;
    }
    return n;
}

static PyObject *check(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t end, max_openers;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &end, &max_openers)) return NULL;
    if (end < 0 || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad end");
        return NULL;
    }
    const uint8_t *d = view.buf;
    Py_ssize_t n = -2;
    int64_t *ends = NULL;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t lines = 0;
    lines = (Py_ssize_t)count(d, (size_t)end, '\n', 0);
    ends = malloc((size_t)(lines + 1) * 8);
    if (ends != NULL) n = block_lines(d, end, max_openers, ends);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *out = n >= 0 ? PyBytes_FromStringAndSize((const char *)ends, n * 8) : NULL;
    free(ends);
    if (n == -2) return PyErr_NoMemory();
    if (n == -1) Py_RETURN_NONE;
    return out;
}

/* _eve_fast._suricata_times: timestamps in Suricata's own form, 2021-06-06T15:57:37.272281+0200 (31
 * bytes), as microseconds since 1970 (UTC). A value of another form, an impossible date or time, or
 * one before 1970 or after max_us: the whole column is refused (None), and _eve_fast decides the
 * usual way. */
static const uint8_t time_digits[24] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25, 27, 28, 29, 30};
static const int days_in_month[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
#define TIME_LEN 31

static int suricata_time(const uint8_t *p, int64_t max_us, int64_t *out) {
    static const uint8_t at[6] = {4, 7, 10, 13, 16, 19}, sep[6] = {'-', '-', 'T', ':', ':', '.'};
    unsigned bad = (p[26] != '+') & (p[26] != '-');
    for (int k = 0; k < 6; k++) bad |= p[at[k]] != sep[k];
    for (int k = 0; k < 24; k++) bad |= (unsigned)(p[time_digits[k]] - '0') > 9;
    if (bad) return -1;
#define D(i) ((int64_t)(p[i] - '0'))
    int64_t year = D(0) * 1000 + D(1) * 100 + D(2) * 10 + D(3), month = D(5) * 10 + D(6), day = D(8) * 10 + D(9);
    int64_t hour = D(11) * 10 + D(12), minute = D(14) * 10 + D(15), second = D(17) * 10 + D(18);
    int64_t frac = D(20) * 100000 + D(21) * 10000 + D(22) * 1000 + D(23) * 100 + D(24) * 10 + D(25);
    int64_t zone_h = D(27) * 10 + D(28), zone_m = D(29) * 10 + D(30);
#undef D
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if (month < 1 || month > 12) return -1;
    if (day < 1 || day > days_in_month[month] + (leap && month == 2) || hour > 23 || minute > 59 || second > 59 ||
        zone_h > 23 || zone_m > 59)
        return -1;
    int64_t zone = (zone_h * 60 + zone_m) * (p[26] == '-' ? -1 : 1);
    /* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil) */
    int64_t y = year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400; /* floor division */
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    int64_t us = (days * 86400 + hour * 3600 + minute * 60 + second - zone * 60) * 1000000 + frac;
    if (us < 0 || us > max_us) return -1;
    *out = us;
    return 0;
}

static PyObject *times(PyObject *self, PyObject *args) {
    Py_buffer offsets, data, valid;
    Py_ssize_t n, offset;
    long long max_us;
    if (!PyArg_ParseTuple(args, "y*y*nnz*L", &offsets, &data, &n, &offset, &valid, &max_us)) return NULL;
    PyObject *res = NULL;
    int rc = 0;
    if (n < 0 || offset < 0 || offsets.len / 4 < offset + n + 1 || (valid.buf != NULL && valid.len * 8 < offset + n))
        PyErr_SetString(PyExc_ValueError, "bad length or offset");
    else if ((res = PyBytes_FromStringAndSize(NULL, n * 8)) != NULL) {
        const int32_t *o = (const int32_t *)offsets.buf + offset;
        const uint8_t *d = data.buf, *bits = valid.buf;
        int64_t *out = (int64_t *)PyBytes_AS_STRING(res);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
            Py_ssize_t bit = offset + i;
            int64_t start = o[i], stop = o[i + 1];
            out[i] = 0;
            if (bits != NULL && !((bits[bit >> 3] >> (bit & 7)) & 1))
                rc = stop == start ? 0 : -1; /* a null slot: no bytes */
            else if (stop - start != TIME_LEN || start < 0 || stop > data.len)
                rc = -1;
            else
                rc = suricata_time(d + start, (int64_t)max_us, &out[i]);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    PyBuffer_Release(&valid);
    if (rc != 0) {
        Py_XDECREF(res);
        Py_RETURN_NONE;
    }
    return res;
}

static PyObject *newlines(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t end;
    if (!PyArg_ParseTuple(args, "y*n", &view, &end)) return NULL;
    if (end < 0 || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad end");
        return NULL;
    }
    size_t n;
    Py_BEGIN_ALLOW_THREADS
    n = count(view.buf, (size_t)end, '\n', 0);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSize_t(n);
}

static PyMethodDef methods[] = {
    {"set_schema", set_schema, METH_O, "set_schema(nodes): the schema, as (parent, name, kind) in pre-order"},
    {"check", check, METH_VARARGS,
     "check(data, end, max_openers): the newline positions (int64 bytes) of a block fit for parsing, or None"},
    {"parse", parse, METH_VARARGS,
     "parse(data, end): per node (slots, validity, offsets, data) of the lines of data[:end], or None"},
    {"newlines", newlines, METH_VARARGS, "newlines(data, end): the newlines in data[:end] (bytes.count, vectorised)"},
    {"times", times, METH_VARARGS,
     "times(offsets, data, n, offset, validity or None, max_us): Suricata's timestamps as int64 bytes, or None"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_abfluss_eve", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__abfluss_eve(void) {
    for (int c = 0; c < 256; c++) plain[c] = c >= 0x20 && c != '"' && c != '\\';
    return PyModule_Create(&module);
}

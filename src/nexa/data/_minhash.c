/* nexa.data._minhash: one-permutation MinHash of byte shingles fused per row, and the LSH pair screen.
 *
 * The compiled twin of nexa.data.dedup's numpy kernels (_one_permutation, _fold_bands and _top_byte; the
 * screen of screened_similarity), with the same output bit for bit: tests/nexa/data/test_minhash_kernel.py
 * holds them to it, so a version's splits do not depend on whether this was built. numpy makes ~20 passes
 * over arrays as long as the text (each shingle's gram, bin, value, then a scatter-min that holds the GIL);
 * here a row's bins stay in a small array in L1 and each shingle is read once (at a million QA rows: 0.92 s
 * of CPU -> 0.37 s, and both threads work). The GIL is released while a span of rows or pairs is worked, so
 * spans run side by side. No numpy C API, only buffers: it builds against any numpy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define EMPTY32 0xFFFFFFFFu
#define GOLDEN32 0x9E3779B1u
#define MAX_PERM 4096

static inline uint64_t load_le64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w); /* shingles are read little-endian, as numpy's "<u8" view reads them */
#endif
    return w;
}

static inline uint32_t fmix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    x *= 0xC2B2AE35u;
    x ^= x >> 16;
    return x;
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

typedef struct {
    const unsigned char *data;
    const int64_t *offsets;
    Py_ssize_t lo, hi, total_rows;
    int size, num_perm, bands, rows_per_band, rough_width;
    unsigned int shift;
    uint64_t m0, m1, salt;
    uint32_t *keys;      /* band-major: keys[band * total_rows + row] */
    uint64_t *digests;   /* [row] */
    unsigned char *sketch; /* [row * num_perm + bin] */
    unsigned char *rough;  /* [row * rough_width + bin], or NULL */
} Job;

static void signature_of_row(const Job *job, Py_ssize_t row, uint32_t *sig) {
    int64_t start = job->offsets[row], length = job->offsets[row + 1] - start;
    for (int b = 0, bins = job->num_perm; b < bins; b++) sig[b] = EMPTY32;
    if (length == 0) { /* an empty text is one shingle of value 0: bin 0, value 0 */
        sig[0] = 0;
        return;
    }
    const unsigned char *bytes = job->data + start;
    uint64_t mask;
    int64_t windows;
    if (length < job->size) { /* a text shorter than a shingle is one shingle: the whole text */
        mask = (1ull << (8 * length)) - 1;
        windows = 1;
    } else {
        mask = job->size == 8 ? ~0ull : (1ull << (8 * job->size)) - 1;
        windows = length - job->size + 1;
    }
    const uint64_t m0 = job->m0, m1 = job->m1;
    const unsigned int shift = job->shift;
    for (int64_t i = 0; i < windows; i++) {
        uint64_t gram = load_le64(bytes + i) & mask;
        uint32_t bin = (uint32_t)((gram * m0) >> shift);
        uint32_t value = (uint32_t)((gram * m1) >> 32);
        value -= value == EMPTY32; /* never the empty marker */
        uint32_t current = sig[bin];
        sig[bin] = value < current ? value : current; /* a conditional move: whether a bin's minimum changes is a coin toss */
    }
}

static void fold_row(const Job *job, Py_ssize_t row, const uint32_t *restrict sig) {
    /* the bands' folds side by side (a multiply's latency per step would otherwise chain 126 times a row) */
    uint32_t acc[MAX_PERM], lowest[MAX_PERM];
    const int bands = job->bands, per_band = job->rows_per_band;
    for (int band = 0; band < bands; band++) {
        acc[band] = (uint32_t)band + 1u;
        lowest[band] = EMPTY32;
    }
    for (int r = 0; r < per_band; r++) {
        for (int band = 0; band < bands; band++) {
            uint32_t bin = sig[band * per_band + r];
            acc[band] = (acc[band] ^ bin) * GOLDEN32;
            lowest[band] = bin < lowest[band] ? bin : lowest[band];
        }
    }
    uint32_t folded = 0;
    for (int band = 0; band < bands; band++) {
        uint32_t key = fmix32(acc[band]);
        folded ^= key;
        if (lowest[band] == EMPTY32) /* every bin of the band empty: a key of the row's own */
            key = fmix32((uint32_t)((uint64_t)row ^ job->salt) + (uint32_t)band * GOLDEN32);
        job->keys[(Py_ssize_t)band * job->total_rows + row] = key;
    }
    job->digests[row] = mix64((uint64_t)folded);
    const int num_perm = job->num_perm; /* a local: the byte stores below could alias *job, which stops vectorising */
    unsigned char *restrict top = job->sketch + row * num_perm;
    for (int b = 0; b < num_perm; b++) {
        uint32_t v = sig[b];
        /* a filled bin whose top byte is 0xFF reads 0xFE, so only an empty bin reads 0xFF */
        top[b] = (unsigned char)((v >> 24) - (v - 0xFF000000u < 0x00FFFFFFu));
    }
    if (job->rough) memcpy(job->rough + row * job->rough_width, top, (size_t)job->rough_width);
}

static void run_job(const Job *job) {
    uint32_t sig[MAX_PERM];
    for (Py_ssize_t row = job->lo; row < job->hi; row++) {
        signature_of_row(job, row, sig);
        fold_row(job, row, sig);
    }
}

static int writable(Py_buffer *view, Py_ssize_t need, Py_ssize_t itemsize, const char *name) {
    if (view->len < need * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, needs %zd", name, view->len, need * itemsize);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(rows_doc,
"rows(data, offsets, lo, hi, size, m0, m1, num_perm, bands, rows_per_band, salt, keys, digests, sketch, rough)\n\n"
"Rows [lo, hi) of the texts (data: bytes plus 8 zero bytes; offsets: int64, one more than the rows) into\n"
"keys (uint32, band-major, bands x rows), digests (uint64), sketch (uint8, rows x num_perm) and rough\n"
"(uint8, rows x num_perm/4, or None), as nexa.data.dedup._band_keys computes them.");

static PyObject *rows(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, offsets, keys, digests, sketch, rough;
    PyObject *rough_obj;
    Py_ssize_t lo, hi;
    int size, num_perm, bands, rows_per_band;
    unsigned long long m0, m1, salt;
    if (!PyArg_ParseTuple(args, "y*y*nniKKiiiKw*w*w*O", &data, &offsets, &lo, &hi, &size, &m0, &m1, &num_perm, &bands,
                          &rows_per_band, &salt, &keys, &digests, &sketch, &rough_obj))
        return NULL;
    int have_rough = rough_obj != Py_None;
    if (have_rough && PyObject_GetBuffer(rough_obj, &rough, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&data); PyBuffer_Release(&offsets); PyBuffer_Release(&keys);
        PyBuffer_Release(&digests); PyBuffer_Release(&sketch);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t total_rows = offsets.len / 8 - 1;
    Job job = {0};
    if (size < 1 || size > 8 || num_perm < 2 || num_perm > MAX_PERM || (num_perm & (num_perm - 1))
        || bands < 1 || rows_per_band < 1 || bands * rows_per_band > num_perm) {
        PyErr_SetString(PyExc_ValueError, "shingle size 1-8, num_perm a power of two 2-4096, bands x rows_per_band <= num_perm");
        goto done;
    }
    if (total_rows < 0 || lo < 0 || hi < lo || hi > total_rows) {
        PyErr_Format(PyExc_ValueError, "rows [%zd, %zd) out of the %zd rows the offsets describe", lo, hi, total_rows);
        goto done;
    }
    const int64_t *off = (const int64_t *)offsets.buf;
    if (total_rows > 0 && (off[0] < 0 || off[total_rows] + 8 > data.len)) {
        PyErr_SetString(PyExc_ValueError, "offsets run past the data (which needs 8 trailing zero bytes)");
        goto done;
    }
    for (Py_ssize_t row = lo; row < hi; row++) {
        if (off[row + 1] < off[row]) {
            PyErr_Format(PyExc_ValueError, "offsets decrease at row %zd", row);
            goto done;
        }
    }
    int rough_width = num_perm / 4 > 0 ? num_perm / 4 : 1;
    if (!writable(&keys, (Py_ssize_t)bands * total_rows, 4, "keys") || !writable(&digests, total_rows, 8, "digests")
        || !writable(&sketch, total_rows * num_perm, 1, "sketch")
        || (have_rough && !writable(&rough, total_rows * rough_width, 1, "rough")))
        goto done;
    unsigned int bits = 0;
    while ((1 << bits) < num_perm) bits++;
    job = (Job){.data = data.buf, .offsets = off, .lo = lo, .hi = hi, .total_rows = total_rows,
                .size = size, .num_perm = num_perm, .bands = bands, .rows_per_band = rows_per_band,
                .rough_width = rough_width, .shift = 64 - bits, .m0 = m0, .m1 = m1, .salt = salt,
                .keys = keys.buf, .digests = digests.buf, .sketch = sketch.buf, .rough = have_rough ? rough.buf : NULL};
    Py_BEGIN_ALLOW_THREADS
    run_job(&job);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data); PyBuffer_Release(&offsets); PyBuffer_Release(&keys);
    PyBuffer_Release(&digests); PyBuffer_Release(&sketch);
    if (have_rough) PyBuffer_Release(&rough);
    return result;
}

/* -- the pair screen ------------------------------------------------------------------------------------------- */

#define SCREEN_AHEAD 16
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)(address))
#endif

static inline double agreement(const unsigned char *restrict a, const unsigned char *restrict b, int width) {
    int filled = 0, agree = 0;
    for (int i = 0; i < width; i++) {
        int either = (a[i] != 0xFF) | (b[i] != 0xFF);
        filled += either;
        agree += (a[i] == b[i]) & either;
    }
    return (double)agree / (double)(filled > 0 ? filled : 1);
}

PyDoc_STRVAR(screen_doc,
"screen(sketch, width, quarter, quarter_width, first, second, lo, hi, cutoff, out)\n\n"
"out[i] for pairs i in [lo, hi): the sketch similarity of rows first[i] and second[i] (equal filled bins over bins\n"
"filled in either), or 0 where their quarter sketch's similarity is below cutoff, as\n"
"nexa.data.dedup.screened_similarity computes it. sketch: uint8, rows x width; quarter: uint8, rows x quarter_width.");

static PyObject *screen(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer sketch, quarter, first, second, out;
    int width, quarter_width;
    Py_ssize_t lo, hi;
    double cutoff;
    if (!PyArg_ParseTuple(args, "y*iy*iy*y*nndw*", &sketch, &width, &quarter, &quarter_width, &first, &second, &lo, &hi,
                          &cutoff, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t rows = width > 0 ? sketch.len / width : 0, pairs = first.len / 8, bad = -1;
    if (width < 1 || quarter_width < 1 || quarter_width > width || quarter.len < rows * quarter_width) {
        PyErr_Format(PyExc_ValueError, "sketch width %d, quarter width %d: the quarter must hold rows x quarter width bytes",
                     width, quarter_width);
        goto done;
    }
    if (second.len != first.len || out.len < pairs * 8 || lo < 0 || hi < lo || hi > pairs) {
        PyErr_Format(PyExc_ValueError, "pairs [%zd, %zd) of %zd: first, second and out must be as long", lo, hi, pairs);
        goto done;
    }
    const int64_t *a = first.buf, *b = second.buf;
    const unsigned char *full = sketch.buf, *rough = quarter.buf;
    double *estimate = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = lo; i < hi; i++) {
        int64_t x = a[i], y = b[i];
        if (x < 0 || y < 0 || x >= rows || y >= rows) {
            bad = i;
            break;
        }
        if (i + SCREEN_AHEAD < hi) { /* the rows are scattered: ask for a later pair's while this one is compared */
            int64_t ahead_x = a[i + SCREEN_AHEAD], ahead_y = b[i + SCREEN_AHEAD];
            if (ahead_x >= 0 && ahead_x < rows && ahead_y >= 0 && ahead_y < rows) {
                PREFETCH(rough + ahead_x * quarter_width);
                PREFETCH(rough + ahead_y * quarter_width);
            }
        }
        double value = agreement(rough + x * quarter_width, rough + y * quarter_width, quarter_width);
        estimate[i] = value >= cutoff ? agreement(full + x * width, full + y * width, width) : 0.0;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0)
        PyErr_Format(PyExc_IndexError, "pair %zd: row %lld or %lld is not one of the sketch's %zd rows", bad,
                     (long long)a[bad], (long long)b[bad], rows);
    else
        result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&sketch); PyBuffer_Release(&quarter); PyBuffer_Release(&first);
    PyBuffer_Release(&second); PyBuffer_Release(&out);
    return result;
}

/* -- candidate pairs of one band ----------------------------------------------------------------------------- */

PyDoc_STRVAR(band_pairs_doc,
"band_pairs(packed, quarter, quarter_width, cutoff, first, second) -> count\n\n"
"One band's candidate pairs as nexa.data.dedup.candidate_pairs finds them: packed holds (key << 32 | row) for\n"
"every row, sorted (uint64); each row is paired with the previous row of its key, and a pair is kept when the\n"
"rows' quarter sketches agree on at least cutoff of their filled bins. Writes the (earlier, later) rows into\n"
"first and second (int64, as long as packed) and returns how many.");

static PyObject *band_pairs(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer packed, quarter, first, second;
    int quarter_width;
    double cutoff;
    if (!PyArg_ParseTuple(args, "y*y*idw*w*", &packed, &quarter, &quarter_width, &cutoff, &first, &second))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = packed.len / 8, rows = quarter_width > 0 ? quarter.len / quarter_width : 0, found = 0, count = 0, bad = -1;
    if (quarter_width < 1 || first.len < n * 8 || second.len < n * 8) {
        PyErr_Format(PyExc_ValueError, "%zd packed rows: first and second need a slot each, the quarter width %d >= 1", n,
                     quarter_width);
        goto done;
    }
    const uint64_t *sorted = packed.buf;
    const unsigned char *rough = quarter.buf;
    int64_t *earlier = first.buf, *later = second.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 1; i < n; i++) {
        if ((sorted[i] ^ sorted[i - 1]) >> 32)
            continue;
        int64_t x = (int64_t)(sorted[i - 1] & 0xFFFFFFFFu), y = (int64_t)(sorted[i] & 0xFFFFFFFFu);
        if (x >= rows || y >= rows || x >= y) { /* rows ascend within a key in a sorted band */
            bad = i;
            break;
        }
        earlier[found] = x;
        later[found] = y;
        found++;
    }
    /* the screen, a second pass: the pairs' rows are scattered, so each is asked for SCREEN_AHEAD pairs early */
    for (Py_ssize_t i = 0; bad < 0 && i < found; i++) {
        if (i + SCREEN_AHEAD < found) {
            PREFETCH(rough + earlier[i + SCREEN_AHEAD] * quarter_width);
            PREFETCH(rough + later[i + SCREEN_AHEAD] * quarter_width);
        }
        int64_t x = earlier[i], y = later[i];
        if (agreement(rough + x * quarter_width, rough + y * quarter_width, quarter_width) >= cutoff) {
            earlier[count] = x;
            later[count] = y;
            count++;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0)
        PyErr_Format(PyExc_ValueError, "packed[%zd]: rows out of order or not among the quarter sketch's %zd rows (is it sorted?)",
                     bad, rows);
    else
        result = PyLong_FromSsize_t(count);
done:
    PyBuffer_Release(&packed); PyBuffer_Release(&quarter); PyBuffer_Release(&first); PyBuffer_Release(&second);
    return result;
}

static PyMethodDef methods[] = {
    {"band_pairs", band_pairs, METH_VARARGS, band_pairs_doc},
    {"rows", rows, METH_VARARGS, rows_doc},
    {"screen", screen, METH_VARARGS, screen_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_minhash",
    "One-permutation MinHash band keys, digests and sketches, and the LSH pair screen, compiled (see nexa.data.dedup).", -1, methods};

PyMODINIT_FUNC PyInit__minhash(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_PERM", MAX_PERM) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

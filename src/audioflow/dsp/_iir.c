/* Cascaded biquads (second-order sections) over many signals at once, sixteen lanes in lock-step.
 *
 * A recursive filter is serial along time: one signal cannot go faster than the latency of its
 * multiply-add chain. Sixteen independent lanes (rows of a batch, or segments of one long row that start
 * early enough for the filter's memory to fade) run side by side, so the compiler's vector units carry
 * eight samples per instruction, two such vectors in flight. Lanes are planned in Python (audioflow.dsp.iir); this file only checks
 * the plan against the buffers and runs it.
 *
 * sos_lanes(src, dst, rows, time, sos, lanes, reverse)
 *   src    float32 [rows, time], C-contiguous: read (rows and time given, as the buffer protocol's
 *          plain-bytes requests carry no shape; its byte size is checked)
 *   dst    float32 [rows, time], C-contiguous, writable, not src: written (a lane's warm-up reads
 *          samples another lane writes, so the input must stay whole until the end)
 *   sos    float32 [rows, sections, 6]: b0 b1 b2 a0 a1 a2 per section, a0 == 1
 *   lanes  int64 [n, 4]: row, lo, hi, warm. Forward: samples lo - warm .. hi - 1 are filtered from a
 *          zero state and lo .. hi - 1 written. Reverse: hi - 1 + warm down to lo, lo .. hi - 1 written.
 *   reverse  0 or 1
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16 /* two vectors of eight: two independent recurrences in flight */
#define HALF (LANES / 2)
#define MAX_SECTIONS 16
#define STRETCH 512 /* steps per stretch: 16 KB of interleaved samples */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* One stretch of a group: buf [steps][LANES] interleaved, coef [sections][6][LANES], the state of every
 * section carried in z1, z2 [sections][LANES] from the stretch before. Transposed direct form II, one
 * section at a time over the stretch, so its state and coefficients stay in registers. */
#if defined(__GNUC__)
typedef float half_t __attribute__((vector_size(HALF * sizeof(float))));
#define LOAD(dst, src) memcpy(&(dst), (src), sizeof(half_t))
#define STORE(dst, src) memcpy((dst), &(src), sizeof(half_t))

VECTOR_CLONES
static void run_stretch(float *buf, Py_ssize_t steps, const float *coef, int sections, float *z1, float *z2) {
    for (int s = 0; s < sections; s++) {
        const float *c = coef + (Py_ssize_t)s * 6 * LANES;
        half_t b0[2], b1[2], b2[2], a1[2], a2[2], p[2], q[2], in[2], y[2];
        for (int h = 0; h < 2; h++) {
            LOAD(b0[h], c + h * HALF), LOAD(b1[h], c + LANES + h * HALF), LOAD(b2[h], c + 2 * LANES + h * HALF);
            LOAD(a1[h], c + 4 * LANES + h * HALF), LOAD(a2[h], c + 5 * LANES + h * HALF);
            LOAD(p[h], z1 + s * LANES + h * HALF), LOAD(q[h], z2 + s * LANES + h * HALF);
        }
        for (Py_ssize_t t = 0; t < steps; t++) {
            float *v = buf + t * LANES;
            LOAD(in[0], v), LOAD(in[1], v + HALF);
            y[0] = b0[0] * in[0] + p[0];
            y[1] = b0[1] * in[1] + p[1];
            p[0] = b1[0] * in[0] - a1[0] * y[0] + q[0];
            p[1] = b1[1] * in[1] - a1[1] * y[1] + q[1];
            q[0] = b2[0] * in[0] - a2[0] * y[0];
            q[1] = b2[1] * in[1] - a2[1] * y[1];
            STORE(v, y[0]), STORE(v + HALF, y[1]);
        }
        for (int h = 0; h < 2; h++) STORE(z1 + s * LANES + h * HALF, p[h]), STORE(z2 + s * LANES + h * HALF, q[h]);
    }
}
#else
static void run_stretch(float *buf, Py_ssize_t steps, const float *coef, int sections, float *z1, float *z2) {
    for (int s = 0; s < sections; s++) {
        const float *c = coef + (Py_ssize_t)s * 6 * LANES;
        for (Py_ssize_t t = 0; t < steps; t++) {
            for (int l = 0; l < LANES; l++) {
                float in = buf[t * LANES + l], *p = z1 + s * LANES + l, *q = z2 + s * LANES + l;
                float y = c[l] * in + *p;
                *p = c[LANES + l] * in - c[4 * LANES + l] * y + *q;
                *q = c[2 * LANES + l] * in - c[5 * LANES + l] * y;
                buf[t * LANES + l] = y;
            }
        }
    }
}
#endif

/* Interleave n steps of all LANES lanes (each lane's samples consecutive, read forwards or backwards)
 * into buf, and back: the fixed lane count lets the compiler unroll and vectorise the transposes. */
VECTOR_CLONES
static void gather_full(float *restrict buf, const float *const *from, Py_ssize_t t0, Py_ssize_t n, int reverse) {
    if (reverse) {
        for (Py_ssize_t t = 0; t < n; t++)
            for (int l = 0; l < LANES; l++) buf[t * LANES + l] = from[l][-(t0 + t)];
    } else {
        for (Py_ssize_t t = 0; t < n; t++)
            for (int l = 0; l < LANES; l++) buf[t * LANES + l] = from[l][t0 + t];
    }
}

VECTOR_CLONES
static void scatter_full(const float *restrict buf, float *const *to, Py_ssize_t t0, Py_ssize_t n, int reverse) {
    if (reverse) {
        for (Py_ssize_t t = 0; t < n; t++)
            for (int l = 0; l < LANES; l++) to[l][-(t0 + t)] = buf[t * LANES + l];
    } else {
        for (Py_ssize_t t = 0; t < n; t++)
            for (int l = 0; l < LANES; l++) to[l][t0 + t] = buf[t * LANES + l];
    }
}

static PyObject *sos_lanes(PyObject *self, PyObject *args) {
    Py_buffer xb, ob, sb, lb;
    Py_ssize_t rows, time;
    int reverse;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*nny*y*p", &xb, &ob, &rows, &time, &sb, &lb, &reverse)) return NULL;
    PyObject *result = NULL;
    float *buf = NULL;
    if (rows < 1 || time < 0 || time > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(float) / rows
        || xb.len != rows * time * (Py_ssize_t)sizeof(float) || ob.len != xb.len) {
        PyErr_SetString(PyExc_ValueError, "src, dst: their sizes are not rows * time float32 samples");
        goto done;
    }
    {
        const char *a = (const char *)xb.buf, *b = (const char *)ob.buf;
        if (a < b + ob.len && b < a + xb.len) {
            PyErr_SetString(PyExc_ValueError, "src and dst overlap");
            goto done;
        }
    }
    if (sb.len % (Py_ssize_t)(6 * sizeof(float)) || sb.len / (Py_ssize_t)(6 * sizeof(float)) % rows) {
        PyErr_SetString(PyExc_ValueError, "sos: expected float32 [rows, sections, 6]");
        goto done;
    }
    int sections = (int)(sb.len / (Py_ssize_t)(6 * sizeof(float)) / rows);
    if (sections < 1 || sections > MAX_SECTIONS) {
        PyErr_Format(PyExc_ValueError, "sos: 1 to %d sections per row, got %d", MAX_SECTIONS, sections);
        goto done;
    }
    if (lb.len % (Py_ssize_t)(4 * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "lanes: expected int64 [n, 4]");
        goto done;
    }
    Py_ssize_t nlanes = lb.len / (Py_ssize_t)(4 * sizeof(int64_t));
    const int64_t *lane = (const int64_t *)lb.buf;
    const float *sos = (const float *)sb.buf;
    const float *x = (const float *)xb.buf;
    float *out = (float *)ob.buf;
    Py_ssize_t longest = 0;
    for (Py_ssize_t i = 0; i < nlanes; i++) {
        int64_t row = lane[4 * i], lo = lane[4 * i + 1], hi = lane[4 * i + 2], warm = lane[4 * i + 3];
        int bad = row < 0 || row >= rows || lo < 0 || hi < lo || hi > time || warm < 0
                  || (reverse ? warm > time - hi : warm > lo);
        if (bad) {
            PyErr_Format(PyExc_ValueError, "lanes: lane %zd (%lld, %lld, %lld, %lld) lies outside [%zd, %zd]", i,
                         (long long)row, (long long)lo, (long long)hi, (long long)warm, rows, time);
            goto done;
        }
        if (hi - lo + warm > longest) longest = (Py_ssize_t)(hi - lo + warm);
    }
    if (longest == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    buf = (float *)malloc((size_t)STRETCH * LANES * sizeof(float));
    if (buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    float coef[MAX_SECTIONS * 6 * LANES], z1[MAX_SECTIONS * LANES], z2[MAX_SECTIONS * LANES];
    for (Py_ssize_t g = 0; g < nlanes; g += LANES) {
        int used = (int)(nlanes - g < LANES ? nlanes - g : LANES);
        Py_ssize_t steps = 0, length[LANES] = {0}, warm[LANES] = {0};
        const float *from[LANES];
        float *to[LANES];
        Py_ssize_t dir = reverse ? -1 : 1;
        memset(coef, 0, sizeof coef);
        memset(z1, 0, sizeof z1);
        memset(z2, 0, sizeof z2);
        for (int l = 0; l < LANES; l++) {
            for (int s = 0; s < sections; s++) coef[(s * 6 + 0) * LANES + l] = 1.0f; /* idle lanes pass */
        }
        for (int l = 0; l < used; l++) {
            const int64_t *d = lane + 4 * (g + l);
            length[l] = (Py_ssize_t)(d[2] - d[1] + d[3]);
            warm[l] = (Py_ssize_t)d[3];
            if (length[l] > steps) steps = length[l];
            /* from: the first sample filtered; to: where the first sample past the warm-up goes */
            from[l] = x + (Py_ssize_t)d[0] * time + (reverse ? d[2] - 1 + d[3] : d[1] - d[3]);
            to[l] = out + (Py_ssize_t)d[0] * time + (reverse ? d[2] - 1 : d[1]);
            const float *c = sos + (Py_ssize_t)d[0] * sections * 6;
            for (int s = 0; s < sections; s++)
                for (int k = 0; k < 6; k++) coef[(s * 6 + k) * LANES + l] = c[s * 6 + k];
        }
        /* stretch by stretch, so the interleaved buffer stays in the first-level cache */
        for (Py_ssize_t t0 = 0; t0 < steps; t0 += STRETCH) {
            Py_ssize_t n = steps - t0 < STRETCH ? steps - t0 : STRETCH;
            Py_ssize_t full = n;  /* steps every used lane has: a plain transpose */
            for (int l = 0; l < used; l++) {
                Py_ssize_t have = length[l] - t0;
                if (have < full) full = have < 0 ? 0 : have;
            }
            if (used < LANES) memset(buf, 0, (size_t)n * LANES * sizeof(float));
            if (used == LANES) {
                gather_full(buf, from, t0, full, reverse);
            } else if (reverse) {
                for (Py_ssize_t t = 0; t < full; t++)
                    for (int l = 0; l < used; l++) buf[t * LANES + l] = from[l][-(t0 + t)];
            } else {
                for (Py_ssize_t t = 0; t < full; t++)
                    for (int l = 0; l < used; l++) buf[t * LANES + l] = from[l][t0 + t];
            }
            for (int l = 0; l < used; l++) {  /* lanes that end inside this stretch */
                Py_ssize_t have = length[l] - t0;
                have = have < 0 ? 0 : (have > n ? n : have);
                for (Py_ssize_t t = full; t < have; t++) buf[t * LANES + l] = from[l][(t0 + t) * dir];
                for (Py_ssize_t t = have > full ? have : full; t < n; t++) buf[t * LANES + l] = 0.0f;
            }
            run_stretch(buf, n, coef, sections, z1, z2);
            /* every lane past its warm-up and through the whole stretch: one unrolled transpose */
            int whole = used == LANES;
            for (int l = 0; l < used && whole; l++) whole = warm[l] <= t0 && length[l] - t0 >= n;
            if (whole) {
                float *dst[LANES];
                for (int l = 0; l < LANES; l++) dst[l] = to[l] - warm[l] * dir;
                scatter_full(buf, dst, t0, n, reverse);
                continue;
            }
            for (int l = 0; l < used; l++) {
                Py_ssize_t lo = warm[l] > t0 ? warm[l] - t0 : 0, hi = length[l] - t0;
                hi = hi > n ? n : hi;
                float *dst = to[l] + (t0 - warm[l]) * dir;
                if (reverse) {
                    for (Py_ssize_t t = lo; t < hi; t++) dst[-t] = buf[t * LANES + l];
                } else {
                    for (Py_ssize_t t = lo; t < hi; t++) dst[t] = buf[t * LANES + l];
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(buf);
    PyBuffer_Release(&xb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&lb);
    return result;
}

static PyMethodDef methods[] = {
    {"sos_lanes", sos_lanes, METH_VARARGS, "Run cascaded biquads over planned lanes of src into dst."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_iir", NULL, -1, methods};

PyMODINIT_FUNC PyInit__iir(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "LANES", LANES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

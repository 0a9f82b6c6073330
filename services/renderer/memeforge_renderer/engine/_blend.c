/* The engine's compiled hot loops: blend(), restart_segments() and largest_fit().
 *
 * blend(): a solid colour through 8-bit glyph masks straight into a pixel buffer.
 *
 * Pillow pastes a colour through a mask onto RGB at about 11 ns a pixel and a layer
 * through a mask at about 2; drawing a caption took a coverage canvas, a fill canvas,
 * a colour layer and a masked paste. This does the one loop the engine needs, over the
 * masks' own pixels only, in SIMD lanes the compiler picks for the baseline CPU:
 *   d = (d * (255 - a) + c * a) / 255, rounded as Pillow's BLEND macro rounds.
 * No -march flags: SSE2 (part of every x86-64 CPU) where the compiler targets it, plain C
 * elsewhere, so one build runs on any x86-64 machine.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* (d * (255 - a) + c * a) / 255 rounded, in 16 bits (at most 65025 + 128), so that the
 * compiler turns the loops below into SIMD over the baseline instruction set (SSE2). */
static inline uint8_t
mix(uint16_t d, uint16_t c, uint16_t a) {
    uint16_t v = (uint16_t)(d * (255 - a) + c * a + 128);
    return (uint8_t)((v + (v >> 8)) >> 8);
}

static void
row1(uint8_t *restrict d, const uint8_t *restrict a, Py_ssize_t n, const uint8_t *c) {
    for (Py_ssize_t x = 0; x < n; x++) {
        d[x] = mix(d[x], c[0], a[x]);
    }
}

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static void
row4(uint8_t *restrict d, const uint8_t *restrict a, Py_ssize_t n, const uint8_t *c) {
    Py_ssize_t x = 0;
#if defined(__SSE2__) /* every x86-64 CPU: four pixels per step, in 16-bit lanes */
    const __m128i zero = _mm_setzero_si128();
    const __m128i full = _mm_set1_epi16(255);
    const __m128i half = _mm_set1_epi16(128);
    int32_t c4;
    memcpy(&c4, c, 4);
    const __m128i cc = _mm_unpacklo_epi8(_mm_set1_epi32(c4), zero);
    for (; x + 4 <= n; x += 4) {
        int32_t a4;
        memcpy(&a4, a + x, 4);
        if (a4 == 0) { /* most of a glyph's box is clear or solid */
            continue;
        }
        if (a4 == -1) {
            _mm_storeu_si128((__m128i *)(d + 4 * x), _mm_set1_epi32(c4));
            continue;
        }
        __m128i m = _mm_cvtsi32_si128(a4);
        m = _mm_unpacklo_epi8(m, m);
        m = _mm_unpacklo_epi16(m, m); /* each coverage byte four times */
        __m128i px = _mm_loadu_si128((const __m128i *)(d + 4 * x));
        __m128i out[2];
        for (int h = 0; h < 2; h++) {
            __m128i mm = h ? _mm_unpackhi_epi8(m, zero) : _mm_unpacklo_epi8(m, zero);
            __m128i dd = h ? _mm_unpackhi_epi8(px, zero) : _mm_unpacklo_epi8(px, zero);
            __m128i v = _mm_add_epi16(
                _mm_add_epi16(_mm_mullo_epi16(dd, _mm_sub_epi16(full, mm)),
                              _mm_mullo_epi16(cc, mm)),
                half);
            out[h] = _mm_srli_epi16(_mm_add_epi16(v, _mm_srli_epi16(v, 8)), 8);
        }
        _mm_storeu_si128((__m128i *)(d + 4 * x), _mm_packus_epi16(out[0], out[1]));
    }
#endif
    for (; x < n; x++) {
        for (int k = 0; k < 4; k++) {
            d[4 * x + k] = mix(d[4 * x + k], c[k], a[x]);
        }
    }
}

static PyObject *
blend(PyObject *self, PyObject *args) {
    Py_buffer dst;
    Py_ssize_t width, height, bpp, ox, oy, cx0, cy0, cx1, cy1;
    Py_buffer colour;
    PyObject *masks;
    if (!PyArg_ParseTuple(
            args, "w*nnny*(nnnn)nnO", &dst, &width, &height, &bpp, &colour, &cx0, &cy0,
            &cx1, &cy1, &ox, &oy, &masks)) {
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *seq = NULL;
    if (width < 0 || height < 0 || bpp < 1 || bpp > 4 || colour.len != bpp ||
        dst.len < width * height * bpp) {
        PyErr_SetString(PyExc_ValueError, "buffer, size, bytes per pixel and colour disagree");
        goto done;
    }
    seq = PySequence_Fast(masks, "masks must be a sequence of (mask, x, y, w, h)");
    if (seq == NULL) {
        goto done;
    }
    /* The clip rectangle, inside the buffer. */
    if (cx0 < 0) cx0 = 0;
    if (cy0 < 0) cy0 = 0;
    if (cx1 > width) cx1 = width;
    if (cy1 > height) cy1 = height;
    const uint8_t *c = colour.buf;
    uint8_t *out = dst.buf;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        Py_buffer mask;
        Py_ssize_t mx, my, mw, mh;
        if (!PyArg_ParseTuple(item, "y*nnnn", &mask, &mx, &my, &mw, &mh)) {
            goto done;
        }
        if (mw < 0 || mh < 0 || mask.len < mw * mh) {
            PyBuffer_Release(&mask);
            PyErr_SetString(PyExc_ValueError, "mask smaller than its size");
            goto done;
        }
        mx += ox;
        my += oy;
        Py_ssize_t x0 = mx > cx0 ? mx : cx0, x1 = mx + mw < cx1 ? mx + mw : cx1;
        Py_ssize_t y0 = my > cy0 ? my : cy0, y1 = my + mh < cy1 ? my + mh : cy1;
        const uint8_t *m = mask.buf;
        for (Py_ssize_t y = y0; y < y1 && x0 < x1; y++) {
            const uint8_t *a = m + (y - my) * mw + (x0 - mx);
            uint8_t *d = out + (y * width + x0) * bpp;
            if (bpp == 4) {
                row4(d, a, x1 - x0, c);
            } else if (bpp == 1) {
                row1(d, a, x1 - x0, c);
            } else {
                for (Py_ssize_t x = 0; x < x1 - x0; x++) {
                    for (Py_ssize_t k = 0; k < bpp; k++) {
                        d[x * bpp + k] = mix(d[x * bpp + k], c[k], a[x]);
                    }
                }
            }
        }
        PyBuffer_Release(&mask);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(seq);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&colour);
    return result;
}

/* restart_segments(data, start, end): data[start:end] cut at every JPEG restart marker
 * (0xFF 0xD0..0xD7), the markers left out: what re.split(rb"\xff[\xd0-\xd7]") gives, in
 * one memchr pass instead of a regex match per byte. Entropy-coded data stuffs every
 * 0xFF data byte with 0x00, so a 0xFF followed by D0..D7 is always a marker. */
static PyObject *
restart_segments(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn", &data, &start, &end)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (start < 0 || end < start || end > data.len) {
        PyErr_SetString(PyExc_ValueError, "start and end must satisfy 0 <= start <= end <= len");
        goto done;
    }
    result = PyList_New(0);
    if (result == NULL) {
        goto done;
    }
    const char *buf = data.buf;
    Py_ssize_t segment = start, i = start;
    while (i < end) {
        const char *ff = memchr(buf + i, 0xFF, (size_t)(end - i));
        if (ff == NULL) {
            break;
        }
        i = ff - buf;
        if (i + 1 < end && (uint8_t)buf[i + 1] >= 0xD0 && (uint8_t)buf[i + 1] <= 0xD7) {
            PyObject *part = PyBytes_FromStringAndSize(buf + segment, i - segment);
            if (part == NULL || PyList_Append(result, part) < 0) {
                Py_XDECREF(part);
                Py_CLEAR(result);
                goto done;
            }
            Py_DECREF(part);
            i += 2;
            segment = i;
        } else {
            i += 1;
        }
    }
    PyObject *last = PyBytes_FromStringAndSize(buf + segment, end - segment);
    if (last == NULL || PyList_Append(result, last) < 0) {
        Py_XDECREF(last);
        Py_CLEAR(result);
    } else {
        Py_DECREF(last);
    }
done:
    PyBuffer_Release(&data);
    return result;
}

/* largest_fit(sizes, paragraphs, space, box_w, box_h, outline_em, line_spacing, safety,
 * exact): the fitter's inner loop in C, a binary search for the largest size at which
 * greedy wrapping fits the box (what fit.py's _try_size decides, without building lines). Every float operation is
 * the Python code's, in the same order (setup.py turns off FMA contraction), and
 * round() is nearbyint(): both round half to even. Where a word is wider than a line at
 * a size tried, exact(size) (Python: the wrap that breaks words) decides. */
typedef struct {
    double advance, over_left, over_right, top, bottom;
    int space_before;
} FitToken;

static PyObject *s_metrics, *s_space_before, *s_advance, *s_over_left, *s_over_right, *s_top,
    *s_bottom;

static int
attr_double(PyObject *obj, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        return -1;
    }
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int
read_token(PyObject *tok, FitToken *t) {
    PyObject *flag = PyObject_GetAttr(tok, s_space_before);
    if (flag == NULL) {
        return -1;
    }
    t->space_before = PyObject_IsTrue(flag);
    Py_DECREF(flag);
    if (t->space_before < 0) {
        return -1;
    }
    PyObject *m = PyObject_GetAttr(tok, s_metrics);
    if (m == NULL) {
        return -1;
    }
    int bad = attr_double(m, s_advance, &t->advance) || attr_double(m, s_over_left, &t->over_left) ||
              attr_double(m, s_over_right, &t->over_right) || attr_double(m, s_top, &t->top) ||
              attr_double(m, s_bottom, &t->bottom);
    Py_DECREF(m);
    return bad ? -1 : 0;
}

static Py_ssize_t
round_half_even(double v) {
    return (Py_ssize_t)nearbyint(v);
}

typedef struct {
    double space, outline_em, line_spacing;
    Py_ssize_t box_w, box_h, safety;
} FitBox;

/* Does the text fit at this size? 1 yes, 0 no, -1 a word is wider than a line. */
static int
quick_fits(const FitToken *tokens, const Py_ssize_t *ends, Py_ssize_t paragraphs,
           const FitBox *b, Py_ssize_t size) {
    double space = b->space, outline_em = b->outline_em;
    Py_ssize_t box_w = b->box_w, box_h = b->box_h;
    Py_ssize_t stroke = 0;
    if (outline_em > 0) {
        stroke = round_half_even((double)size * outline_em);
        if (stroke < 1) stroke = 1;
    }
    Py_ssize_t pad = stroke + b->safety;
    Py_ssize_t lh = round_half_even((double)size * b->line_spacing);
    if (lh < 1) lh = 1;
    Py_ssize_t room = box_h - 2 * pad;
    Py_ssize_t max_lines = room <= 0 ? 0 : 1 + room / lh;
    Py_ssize_t limit = box_w - 2 * pad;
    if (max_lines == 0 || limit <= 0) {
        return 0;
    }
    double s = (double)size, lim = (double)limit;
    Py_ssize_t lines = 0;
    double first_top = 0.0, last_bottom = 0.0;
    Py_ssize_t start = 0;
    for (Py_ssize_t p = 0; p < paragraphs; p++) {
        Py_ssize_t n = ends[p];
        if (n == start) { /* an empty line */
            if (++lines > max_lines) return 0;
            if (lines == 1) first_top = 0.0;
            last_bottom = 0.0;
            continue;
        }
        Py_ssize_t i = start;
        while (i < n) {
            const FitToken *m = &tokens[i];
            double advance = m->advance, ol = m->over_left, orr = m->over_right;
            if (ceil((advance + ol + orr) * s) > lim) return -1;
            double top = m->top, bottom = m->bottom;
            Py_ssize_t j = i + 1;
            for (; j < n; j++) {
                m = &tokens[j];
                double extra = m->advance + (m->space_before ? space : 0.0);
                double nol = ol > m->over_left ? ol : m->over_left;
                double nor = orr > m->over_right ? orr : m->over_right;
                if (ceil((advance + extra + nol + nor) * s) > lim) break;
                advance += extra;
                ol = nol;
                orr = nor;
                if (m->top < top) top = m->top;
                if (m->bottom > bottom) bottom = m->bottom;
            }
            if (++lines > max_lines) return 0;
            if (lines == 1) first_top = top;
            last_bottom = bottom;
            i = j;
        }
        start = n;
    }
    double ascent = ceil(-first_top * s), descent = ceil(last_bottom * s);
    if (ascent < 0) ascent = 0;
    if (descent < 0) descent = 0;
    return (double)(2 * pad + (lines - 1) * lh) + ascent + descent <= (double)box_h;
}

static PyObject *
largest_fit(PyObject *self, PyObject *args) {
    PyObject *sizes_obj, *paragraphs_obj, *exact;
    FitBox box;
    if (!PyArg_ParseTuple(args, "OOdnnddnO", &sizes_obj, &paragraphs_obj, &box.space, &box.box_w,
                          &box.box_h, &box.outline_em, &box.line_spacing, &box.safety, &exact)) {
        return NULL;
    }
    if (!(box.line_spacing > 0 && isfinite(box.line_spacing)) || box.safety < 0 ||
        !isfinite(box.outline_em) || !isfinite(box.space)) {
        PyErr_SetString(PyExc_ValueError,
                        "line_spacing must be finite and > 0, safety >= 0, outline_em and "
                        "space finite");
        return NULL;
    }
    if (!PyCallable_Check(exact)) {
        PyErr_SetString(PyExc_TypeError, "exact must be callable");
        return NULL;
    }
    PyObject *result = NULL, *sizes = NULL, *paragraphs = NULL;
    FitToken *tokens = NULL;
    Py_ssize_t *ends = NULL, *sz = NULL;
    sizes = PySequence_Fast(sizes_obj, "sizes must be a sequence of ints");
    paragraphs = sizes ? PySequence_Fast(paragraphs_obj, "paragraphs must be a sequence") : NULL;
    if (paragraphs == NULL) goto done;
    Py_ssize_t nsizes = PySequence_Fast_GET_SIZE(sizes);
    Py_ssize_t npar = PySequence_Fast_GET_SIZE(paragraphs);
    sz = PyMem_Malloc(sizeof(Py_ssize_t) * (nsizes + 1));
    ends = PyMem_Malloc(sizeof(Py_ssize_t) * (npar + 1));
    if (sz == NULL || ends == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < nsizes; k++) {
        sz[k] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sizes, k));
        if (sz[k] == -1 && PyErr_Occurred()) goto done;
        if (sz[k] < 1) {
            PyErr_SetString(PyExc_ValueError, "sizes must be positive");
            goto done;
        }
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t p = 0; p < npar; p++) {
        Py_ssize_t n = PyObject_Length(PySequence_Fast_GET_ITEM(paragraphs, p));
        if (n < 0) goto done;
        total += n;
        ends[p] = total;
    }
    tokens = PyMem_Malloc(sizeof(FitToken) * (total + 1));
    if (tokens == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t p = 0; p < npar; p++) {
        PyObject *par = PySequence_Fast(PySequence_Fast_GET_ITEM(paragraphs, p),
                                        "a paragraph must be a sequence of tokens");
        if (par == NULL) goto done;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(par);
        if (at + n != ends[p]) { /* it changed length meanwhile */
            Py_DECREF(par);
            PyErr_SetString(PyExc_ValueError, "paragraphs changed while being read");
            goto done;
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            if (read_token(PySequence_Fast_GET_ITEM(par, k), &tokens[at++]) < 0) {
                Py_DECREF(par);
                goto done;
            }
        }
        Py_DECREF(par);
    }
    /* fit._search: the largest size that fits, sizes ascending. */
    Py_ssize_t best = -1, lo = 0, hi = nsizes - 1;
    while (lo <= hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        int fits = quick_fits(tokens, ends, npar, &box, sz[mid]);
        if (fits < 0) {
            PyObject *answer = PyObject_CallFunction(exact, "n", sz[mid]);
            if (answer == NULL) goto done;
            fits = PyObject_IsTrue(answer);
            Py_DECREF(answer);
            if (fits < 0) goto done;
        }
        if (fits) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    if (best < 0) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        result = PyLong_FromSsize_t(sz[best]);
    }
done:
    PyMem_Free(tokens);
    PyMem_Free(ends);
    PyMem_Free(sz);
    Py_XDECREF(paragraphs);
    Py_XDECREF(sizes);
    return result;
}

static PyMethodDef methods[] = {
    {"blend", blend, METH_VARARGS,
     "blend(dst, width, height, bpp, colour, clip, ox, oy, masks): draw ``colour`` "
     "(bpp bytes) through each (mask, x, y, w, h), placed at (x + ox, y + oy), into the "
     "writable ``dst`` buffer of width x height pixels, inside clip (x0, y0, x1, y1)."},
    {"restart_segments", restart_segments, METH_VARARGS,
     "restart_segments(data, start, end): data[start:end] split at the JPEG restart "
     "markers (0xFF 0xD0..0xD7), as a list of bytes."},
    {"largest_fit", largest_fit, METH_VARARGS,
     "largest_fit(sizes, paragraphs, space, box_w, box_h, outline_em, line_spacing, safety, "
     "exact): the largest of the ascending ``sizes`` at which the paragraphs of text.Token "
     "fit the box when wrapped greedily, or None; exact(size) decides where a word is wider "
     "than a line."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_blend", "The render engine's compiled hot loops.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__blend(void) {
    PyObject **names[] = {&s_metrics, &s_space_before, &s_advance, &s_over_left,
                          &s_over_right, &s_top, &s_bottom};
    const char *texts[] = {"metrics", "space_before", "advance", "over_left",
                           "over_right", "top", "bottom"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i] = PyUnicode_InternFromString(texts[i]);
        if (*names[i] == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module);
}

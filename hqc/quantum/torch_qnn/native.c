/* Gate-by-gate real statevector evolution and its adjoint backward, one sample at a time.
 *
 * Small circuits spend their time in per-op dispatch, not arithmetic: one call here replaces
 * the few hundred torch ops of the fused path. Gates are 1- or 2-qubit real matrices
 * M = A0 + cos(phi) Ac + sin(phi) As (fixed gates: A0 only, slot < 0), stored as 4x4 blocks
 * (a 1-qubit gate uses the top-left 2x2). Index bit q is qubit q (Qiskit's order); inside a
 * 2-qubit gate, local index = bit(q0) + 2 bit(q1). Arithmetic is float64 whatever the caller's
 * dtype, so the adjoint's recomputed states do not drift.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

static void gate_matrix(const double *mats, const double *angles, int64_t slot, double *m,
                        double *dm) {
    if (slot < 0) {
        memcpy(m, mats, 16 * sizeof(double));
        return;
    }
    double c = cos(angles[slot]), s = sin(angles[slot]);
    for (int k = 0; k < 16; ++k) {
        m[k] = mats[k] + c * mats[16 + k] + s * mats[32 + k];
        if (dm) dm[k] = -s * mats[16 + k] + c * mats[32 + k];
    }
}

/* Visit every pair (1-qubit gate) or quadruple (2-qubit gate) of amplitudes a gate couples, as
 * contiguous inner runs so the compiler vectorises them; BODY sees the indices i0..i3 (local
 * index = bit(q0) + 2 bit(q1)). */
#define PAIRS(dim, q0, ...)                                                             \
    do {                                                                                \
        const int64_t m0_ = (int64_t)1 << (q0);                                         \
        for (int64_t h_ = 0; h_ < (dim); h_ += 2 * m0_)                                 \
            for (int64_t i0 = h_; i0 < h_ + m0_; ++i0) {                                \
                const int64_t i1 = i0 + m0_;                                            \
                __VA_ARGS__\
            }                                                                           \
    } while (0)
#define QUADS(dim, q0, q1, ...)                                                         \
    do {                                                                                \
        const int64_t m0_ = (int64_t)1 << (q0), m1_ = (int64_t)1 << (q1);               \
        const int64_t lo_ = m0_ < m1_ ? m0_ : m1_, hi_ = m0_ < m1_ ? m1_ : m0_;         \
        for (int64_t a_ = 0; a_ < (dim); a_ += 2 * hi_)                                 \
            for (int64_t b_ = a_; b_ < a_ + hi_; b_ += 2 * lo_)                         \
                for (int64_t i0 = b_; i0 < b_ + lo_; ++i0) {                            \
                    const int64_t i1 = i0 + m0_, i2 = i0 + m1_, i3 = i0 + m0_ + m1_;    \
                    __VA_ARGS__\
                }                                                                       \
    } while (0)

/* psi <- M psi. */
static void apply(double *restrict psi, int64_t dim, const double *m, int64_t q0, int64_t q1) {
    if (q1 < 0) {
        const double a = m[0], b = m[1], c = m[4], d = m[5];
        PAIRS(dim, q0, {
            const double u = psi[i0], v = psi[i1];
            psi[i0] = a * u + b * v;
            psi[i1] = c * u + d * v;
        });
        return;
    }
    double r[16];
    memcpy(r, m, sizeof r);
    QUADS(dim, q0, q1, {
        const double v0 = psi[i0], v1 = psi[i1], v2 = psi[i2], v3 = psi[i3];
        psi[i0] = r[0] * v0 + r[1] * v1 + r[2] * v2 + r[3] * v3;
        psi[i1] = r[4] * v0 + r[5] * v1 + r[6] * v2 + r[7] * v3;
        psi[i2] = r[8] * v0 + r[9] * v1 + r[10] * v2 + r[11] * v3;
        psi[i3] = r[12] * v0 + r[13] * v1 + r[14] * v2 + r[15] * v3;
    });
}

/* One adjoint step in one pass: psi <- M^T psi (the gate's input), lam <- M^T lam, returning
 * <lam_out| dM |psi_in> (dm NULL: a fixed gate, no derivative). */
static double unapply(double *restrict psi, double *restrict lam, int64_t dim, const double *m,
                      const double *dm, int64_t q0, int64_t q1) {
    double acc = 0.0;
    if (q1 < 0) {
        const double a = m[0], b = m[4], c = m[1], d = m[5]; /* M^T */
        const double e = dm ? dm[0] : 0, f = dm ? dm[1] : 0, g = dm ? dm[4] : 0,
                     h = dm ? dm[5] : 0;
        PAIRS(dim, q0, {
            const double u = psi[i0], v = psi[i1], x = a * u + b * v, y = c * u + d * v;
            const double l0 = lam[i0], l1 = lam[i1];
            psi[i0] = x;
            psi[i1] = y;
            acc += l0 * (e * x + f * y) + l1 * (g * x + h * y);
            lam[i0] = a * l0 + b * l1;
            lam[i1] = c * l0 + d * l1;
        });
        return acc;
    }
    double t[16], z[16] = {0};
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) t[4 * i + j] = m[4 * j + i];
    if (dm) memcpy(z, dm, sizeof z);
    QUADS(dim, q0, q1, {
        const double v0 = psi[i0], v1 = psi[i1], v2 = psi[i2], v3 = psi[i3];
        const double l0 = lam[i0], l1 = lam[i1], l2 = lam[i2], l3 = lam[i3];
        const double x0 = t[0] * v0 + t[1] * v1 + t[2] * v2 + t[3] * v3;
        const double x1 = t[4] * v0 + t[5] * v1 + t[6] * v2 + t[7] * v3;
        const double x2 = t[8] * v0 + t[9] * v1 + t[10] * v2 + t[11] * v3;
        const double x3 = t[12] * v0 + t[13] * v1 + t[14] * v2 + t[15] * v3;
        psi[i0] = x0, psi[i1] = x1, psi[i2] = x2, psi[i3] = x3;
        acc += l0 * (z[0] * x0 + z[1] * x1 + z[2] * x2 + z[3] * x3) +
               l1 * (z[4] * x0 + z[5] * x1 + z[6] * x2 + z[7] * x3) +
               l2 * (z[8] * x0 + z[9] * x1 + z[10] * x2 + z[11] * x3) +
               l3 * (z[12] * x0 + z[13] * x1 + z[14] * x2 + z[15] * x3);
        lam[i0] = t[0] * l0 + t[1] * l1 + t[2] * l2 + t[3] * l3;
        lam[i1] = t[4] * l0 + t[5] * l1 + t[6] * l2 + t[7] * l3;
        lam[i2] = t[8] * l0 + t[9] * l1 + t[10] * l2 + t[11] * l3;
        lam[i3] = t[12] * l0 + t[13] * l1 + t[14] * l2 + t[15] * l3;
    });
    return acc;
}

/* Forward: state (batch, dim) holds the initial states on entry, the final ones on return. */
void hqc_forward(double *state, int64_t batch, int64_t dim, const double *angles,
                 int64_t slots, int64_t ngates, const int64_t *q0, const int64_t *q1,
                 const int64_t *slot, const double *mats) {
    double m[16];
    for (int64_t b = 0; b < batch; ++b) {
        double *psi = state + b * dim;
        const double *phi = angles + b * slots;
        for (int64_t g = 0; g < ngates; ++g) {
            gate_matrix(mats + 48 * g, phi, slot[g], m, 0);
            apply(psi, dim, m, q0[g], q1[g]);
        }
    }
}

/* Backward by the adjoint method: state holds the final states and lam the gradient of the
 * loss by them; on return state holds the initial states, lam the gradient by them, and
 * grad_angles (batch, slots, zeroed by the caller) the gradient by every angle slot. */
void hqc_backward(double *state, double *lam, double *grad_angles, int64_t batch, int64_t dim,
                  const double *angles, int64_t slots, int64_t ngates, const int64_t *q0,
                  const int64_t *q1, const int64_t *slot, const double *mats) {
    double m[16], dm[16];
    for (int64_t b = 0; b < batch; ++b) {
        double *psi = state + b * dim, *l = lam + b * dim;
        const double *phi = angles + b * slots;
        for (int64_t g = ngates - 1; g >= 0; --g) {
            gate_matrix(mats + 48 * g, phi, slot[g], m, dm);
            /* real unitaries are orthogonal: M^T recovers the gate's input from its output */
            const double d = unapply(psi, l, dim, m, slot[g] >= 0 ? dm : 0, q0[g], q1[g]);
            if (slot[g] >= 0) grad_angles[b * slots + slot[g]] += d;
        }
    }
}

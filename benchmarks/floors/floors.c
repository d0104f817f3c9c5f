/* Hand-written value-and-gradient functions: the per-call floors of the benchmark suite.
 *
 * Each writes the value and then the gradient into out[]. Derivations are by hand, in the
 * staged style of a backward pass (CS231n's "(x + s(y)) / (s(x) + (x+y)^2)" worked example).
 */
#include <math.h>
#include "floors.h"

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

/* W1a: f(x, y) = (x + s(y)) / (s(x) + (x + y)^2) */
void w1a_vg(double x, double y, double *out) {
    double sy = sigmoid(y);
    double num = x + sy;
    double sx = sigmoid(x);
    double xpy = x + y;
    double xpysqr = xpy * xpy;
    double den = sx + xpysqr;
    double invden = 1.0 / den;
    double f = num * invden;
    /* backward */
    double dnum = invden;
    double dinvden = num;
    double dden = (-1.0 / (den * den)) * dinvden;
    double dsx = dden;
    double dxpysqr = dden;
    double dxpy = 2.0 * xpy * dxpysqr;
    double dx = dxpy + (1.0 - sx) * sx * dsx + dnum;
    double dy = dxpy + (1.0 - sy) * sy * dnum;
    out[0] = f; out[1] = dx; out[2] = dy;
}

/* W1b: f(a, b) = log(a*b + max(a, 2)); the max's gradient goes to a on a tie. */
void w1b_vg(double a, double b, double *out) {
    int a_wins = a >= 2.0;
    double m = a_wins ? a : 2.0;
    double s = a * b + m;
    double ds = 1.0 / s;
    out[0] = log(s);
    out[1] = ds * (b + (a_wins ? 1.0 : 0.0));
    out[2] = ds * a;
}

/* W6: damped pendulum, explicit Euler, T steps; loss = sum_t theta_t^2 (t = 1..T).
 * Gradient w.r.t. damping c and length L by forward-mode tangents (two directions). */
void w6_vg(double c, double L, int T, double *out) {
    const double g = 9.81, dt = 0.05;
    double th = 1.0, om = 0.0;
    double th_c = 0.0, om_c = 0.0, th_L = 0.0, om_L = 0.0;
    double loss = 0.0, loss_c = 0.0, loss_L = 0.0;
    double k = g / L, k_L = -g / (L * L);
    for (int t = 0; t < T; ++t) {
        double s = sin(th), co = cos(th);
        double nth = th + dt * om;
        double nth_c = th_c + dt * om_c;
        double nth_L = th_L + dt * om_L;
        double nom = om + dt * (-k * s - c * om);
        double nom_c = om_c + dt * (-k * co * th_c - om - c * om_c);
        double nom_L = om_L + dt * (-k_L * s - k * co * th_L - c * om_L);
        th = nth; th_c = nth_c; th_L = nth_L;
        om = nom; om_c = nom_c; om_L = nom_L;
        loss += th * th; loss_c += 2.0 * th * th_c; loss_L += 2.0 * th * th_L;
    }
    out[0] = loss; out[1] = loss_c; out[2] = loss_L;
}

void w1a_vg(double x, double y, double *out);
void w1b_vg(double a, double b, double *out);
void w6_vg(double c, double L, int T, double *out);

// Linked into the distributed binary only (scripts/dist.sh, with `--wrap=hypotf`).
//
// The Swift Glibc overlay (libswiftGlibc.a) references hypotf, and glibc 2.35 gave hypotf a new
// symbol version, so a binary linked here would need glibc 2.35 for a function nvfp4 never calls.
// Everything else it needs is in glibc 2.34. `--wrap=hypotf` sends those references here instead,
// which lowers the floor to 2.34: RHEL/Rocky/Alma 9 and Amazon Linux 2023. The wheel's tag is still
// read from the linked binary, not assumed.
//
// No libm call (a call to any hypotf would be wrapped back to this function): in double, x*x and
// y*y are exact for floats and cannot overflow, so one rounding of the sum, a correctly rounded
// square root and the conversion to float give hypotf's value (glibc's own hypotf does the same).
// Infinity wins over NaN, as C's Annex F requires.
float __wrap_hypotf(float x, float y) {
    if (__builtin_isinf(x) || __builtin_isinf(y)) return __builtin_inff();
    double dx = x, dy = y;
    return (float)__builtin_sqrt(dx * dx + dy * dy);
}

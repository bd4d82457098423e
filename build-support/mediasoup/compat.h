/* glibc >= 2.34 defines SIGSTKSZ as a call to sysconf(), which breaks the constant expression
 * std::max(SIGSTKSZ, 65536) in the abseil bundled with mediasoup-sys 0.2.5. Force a constant. */
#include <signal.h>
#undef SIGSTKSZ
#define SIGSTKSZ 16384

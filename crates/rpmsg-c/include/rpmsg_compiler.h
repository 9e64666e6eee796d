/* rpmsg-c: compiler-specific helpers used by the RPMsg-Lite compatible headers.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef RPMSG_COMPILER_H_
#define RPMSG_COMPILER_H_

#if defined(__ICCARM__)
#include <intrinsics.h>
#define MEM_BARRIER()   __DSB()
#define RL_PACKED_BEGIN __packed
#define RL_PACKED_END
#elif defined(__CC_ARM) || (defined(__ARMCC_VERSION) && (__ARMCC_VERSION >= 6010050))
#define MEM_BARRIER()   __schedule_barrier()
#define RL_PACKED_BEGIN _Pragma("pack(1U)")
#define RL_PACKED_END   _Pragma("pack()")
#elif defined(__GNUC__)
/* A full hardware barrier on every architecture GCC and Clang target. */
#define MEM_BARRIER()   __sync_synchronize()
#define RL_PACKED_BEGIN
#define RL_PACKED_END   __attribute__((__packed__))
#else
#error "rpmsg-c: add MEM_BARRIER and RL_PACKED_* for this compiler in rpmsg_compiler.h"
#endif

#endif /* RPMSG_COMPILER_H_ */

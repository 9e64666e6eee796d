/* Configuration of the C test programs: the values come from -D flags (tests/c_programs.rs
 * builds one program per configuration); what is not given takes rpmsg_default_config.h's
 * default, as in a project that sets only some options. */
#ifndef RPMSG_CONFIG_H_
#define RPMSG_CONFIG_H_
#include <stdio.h>
#include <stdlib.h>
#define RL_ASSERT(x)                                                         \
    do                                                                       \
    {                                                                        \
        if (!(x))                                                            \
        {                                                                    \
            fprintf(stderr, "RL_ASSERT failed at %s:%d\n", __FILE__, __LINE__); \
            abort();                                                         \
        }                                                                    \
    } while (0)
#endif

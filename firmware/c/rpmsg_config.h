/* The firmware's RPMsg-Lite configuration, as an SDK project would have it. */
#ifndef RPMSG_CONFIG_H_
#define RPMSG_CONFIG_H_
#define RL_BUFFER_PAYLOAD_SIZE (496U)
#define RL_BUFFER_COUNT (2U)
#define RL_API_HAS_ZEROCOPY (1)
#define RL_USE_STATIC_API (1)
#endif

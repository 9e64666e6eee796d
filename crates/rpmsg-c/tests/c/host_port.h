/* The test programs' "board": one side of rpmsg-rs's two-process protocol (the shared file with
 * its host block, the UNIX-datagram doorbells; crates/rpmsg-host/src/file.rs and doorbell.rs). */
#ifndef HOST_PORT_H_
#define HOST_PORT_H_
#include <stddef.h>
#include <stdint.h>

/* Creates (master) or attaches to (remote) the shared file at path, binds this side's doorbell
 * socket in sockdir and marks this side ready. Returns the region's base; *len its length.
 * Exits the program with a message when the file does not match this build's configuration. */
void *host_open(int master, const char *path, const char *sockdir, size_t *len);
/* Delivers pending doorbells (the "interrupt"): calls env_isr for each. */
void host_poll(void);
/* Whether the other side wrote "closed" in the host block. */
int host_peer_closed(void);
/* Marks this side closed and removes its socket. */
void host_close(void);
/* Doorbells sent and delivered so far. */
extern unsigned long host_doorbells_sent, host_doorbells_delivered;
/* Set when the library masked the vectors while a doorbell was delivered (a locking bug). */
extern int host_isr_while_masked;
uint64_t host_now_ms(void);
/* A 32-bit word of the host block's scratch area (offsets 0x300..0x3ff), for test programs to
 * tell each other where they are (as a primary core tells the secondary it may start). */
volatile uint32_t *host_scratch(uint32_t off);
#endif

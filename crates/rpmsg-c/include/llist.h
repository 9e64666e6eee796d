/* rpmsg-c: the doubly linked list an instance keeps its endpoints in (rl_endpoints: each
 * node's data is the struct rpmsg_lite_endpoint *). The library maintains it; applications
 * may walk it but must not change it. Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef LLIST_H_
#define LLIST_H_

#include <stdint.h>

struct llist
{
    void *data;          /* the element (an endpoint) */
    uint32_t attr;       /* library-private */
    struct llist *next;  /* next node, NULL at the end */
    struct llist *prev;  /* previous node, NULL at the head */
};

/* Insert node at the head of *head / unlink it (the same operations as RPMsg-Lite's llist.c,
 * provided by the glue file for code that used them directly). */
void add_to_list(struct llist **head, struct llist *node);
void remove_from_list(struct llist **head, struct llist *node);

#endif /* LLIST_H_ */

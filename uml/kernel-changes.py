#!/usr/bin/env python3
"""Our two changes to Debian's linux-source-6.1 for the UML test kernel (docs: linux-peer.md 2.3).

Usage: kernel-changes.py KERNEL_TREE

Each edit is anchored on a short piece of the upstream text and fails loudly (exit 1, naming the
file and anchor) if that anchor is missing or ambiguous, so a new source version cannot be built
with a change silently not applied. The C inserted below is ours; nothing from the kernel is
stored in this repository except the anchors.

1. HOST_FP_SIZE 2696 -> 16384 bytes (arch/x86/um/user-offsets.c). On hosts with AMX the XSAVE
   area is larger than 2696 bytes and PTRACE_SETREGSET(NT_X86_XSTATE) fails with EFAULT unless it
   gets the whole area: the first user process dies. The buffer lives in thread_info at the bottom
   of the kernel stack, hence KERNEL_STACK_ORDER=3 in uml/kernel-config. Harmless elsewhere.

2. virtio_uml: run virtqueue callbacks from a per-vq work_struct instead of the SIGIO hard-irq
   handler. virtio_rpmsg_bus' rx callback takes a mutex and registers devices, which in hard-irq
   context logs "BUG: scheduling while atomic". Both notification paths are deferred: the call-fd
   interrupt (vu_interrupt) and the in-band VHOST_USER_SLAVE_VRING_CALL (vu_req_interrupt).
"""

import sys
from pathlib import Path

MARK = "rpmsg-rs"  # every inserted line group carries this tag, so a rerun can tell it is done


def fail(msg):
    print(f"kernel-changes.py: {msg}", file=sys.stderr)
    sys.exit(1)


def edit(text, path, anchor, new, *, where="replace"):
    """Replace (or insert before/after) `anchor`, which must occur exactly once."""
    count = text.count(anchor)
    if count != 1:
        fail(f"{path}: anchor found {count} times (want 1): {anchor!r}")
    if where == "before":
        new = new + anchor
    elif where == "after":
        new = anchor + new
    return text.replace(anchor, new, 1)


def change_file(tree, rel, edits):
    path = tree / rel
    if not path.is_file():
        fail(f"{path}: missing (not a linux-source-6.1 tree?)")
    text = path.read_text()
    if MARK in text:
        fail(f"{path}: already changed (tag {MARK!r} present); start from a fresh tree")
    for anchor, new, where in edits:
        text = edit(text, rel, anchor, new, where=where)
    path.write_text(text)
    print(f"kernel-changes.py: changed {rel} ({len(edits)} edits)", file=sys.stderr)


def main():
    if len(sys.argv) != 2:
        fail("usage: kernel-changes.py KERNEL_TREE")
    tree = Path(sys.argv[1])

    # 1. Room for the host's whole XSAVE area (AMX: 11008 bytes).
    change_file(
        tree,
        "arch/x86/um/user-offsets.c",
        [
            (
                "DEFINE_LONGS(HOST_FP_SIZE, 2696);",
                f"DEFINE_LONGS(HOST_FP_SIZE, 16384); /* {MARK}: whole XSAVE area on AMX hosts */",
                "replace",
            ),
        ],
    )

    # 2. Virtqueue callbacks in process context.
    work_fn = f"""/* {MARK}: virtqueue callbacks run here, in process context, not in the SIGIO handler. */
static void vu_vq_cb_work(struct work_struct *work)
{{
	struct virtio_uml_vq_info *info =
		container_of(work, struct virtio_uml_vq_info, cb_work);

	vring_interrupt(0, info->vq);
}}

"""
    change_file(
        tree,
        "arch/um/drivers/virtio_uml.c",
        [
            # The per-vq work item and a back pointer to its queue.
            (
                "\tchar name[32];\n\tbool suspended;\n",
                f"\tstruct virtqueue *vq; /* {MARK} */\n"
                f"\tstruct work_struct cb_work; /* {MARK} */\n",
                "after",
            ),
            # The work function, placed before the interrupt handler that schedules it.
            ("static irqreturn_t vu_interrupt(int irq, void *opaque)\n", work_fn, "before"),
            # Call-fd path: schedule the work instead of calling vring_interrupt() in hard irq.
            (
                "\t\tif (rc == sizeof(n))\n\t\t\tret |= vring_interrupt(irq, vq);\n",
                f"\t\tif (rc == sizeof(n)) {{ /* {MARK} */\n"
                "\t\t\tschedule_work(&info->cb_work);\n"
                "\t\t\tret = IRQ_HANDLED;\n"
                "\t\t}\n",
                "replace",
            ),
            # In-band path (VHOST_USER_SLAVE_VRING_CALL on the slave request fd).
            (
                "\t\t\t\tvring_interrupt(0 /* ignored */, vq);\n",
                f"\t\t\t\tschedule_work(&((struct virtio_uml_vq_info *)vq->priv)->cb_work); /* {MARK} */\n",
                "replace",
            ),
            # Set up the work before the call fd's irq is requested (vu_setup_vq).
            (
                "\tvq->priv = info;\n\tvq->num_max = num;\n",
                f"\tinfo->vq = vq; /* {MARK} */\n\tINIT_WORK(&info->cb_work, vu_vq_cb_work);\n",
                "after",
            ),
            # vu_setup_vq error path: no work may run on a deleted queue.
            (
                "error_kick:\n\tvring_del_virtqueue(vq);\n",
                f"error_kick:\n\tcancel_work_sync(&info->cb_work); /* {MARK} */\n\tvring_del_virtqueue(vq);\n",
                "replace",
            ),
            # vu_del_vq: after the irq is freed, wait for a pending callback before deleting.
            (
                "\t\tos_close_file(info->kick_fd);\n\n\tvring_del_virtqueue(vq);\n\tkfree(info);\n",
                "\t\tos_close_file(info->kick_fd);\n\n"
                f"\tcancel_work_sync(&info->cb_work); /* {MARK} */\n"
                "\tvring_del_virtqueue(vq);\n\tkfree(info);\n",
                "replace",
            ),
        ],
    )


if __name__ == "__main__":
    main()

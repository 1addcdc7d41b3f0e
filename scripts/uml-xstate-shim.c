/*
 * LD_PRELOAD shim for user-mode-linux on hosts with a large XSAVE area.
 *
 * Built and preloaded by scripts/kernel-lane; not meant to be used by hand.
 *
 * Why: UML (6.1 and 6.12 as Debian ships them) restores the FPU state of
 * its processes with ptrace(PTRACE_SETREGSET, pid, NT_X86_XSTATE, iov) and
 * a buffer of a size fixed when UML was built (2696 bytes: up to the
 * AVX-512 and PKRU state). The host kernel accepts only a whole XSAVE
 * buffer of its own size: xstateregs_set() in arch/x86/kernel/fpu/regset.c
 * returns -EFAULT unless count == fpu_user_cfg.max_size. On a CPU with AMX
 * (Intel Sapphire Rapids and later: TILECFG + 8 KiB TILEDATA, 10752 bytes)
 * the sizes differ, UML's init dies at its first context switch with
 * "userspace - ptrace set fp regs failed, errno = 14" and the kernel
 * panics ("Attempted to kill init").
 *
 * What: a short NT_X86_XSTATE SETREGSET is widened to the host's size.
 * UML's bytes go first, the rest is zero, and every state component that
 * UML's buffer does not hold entirely is marked absent in the XSAVE
 * header's XSTATE_BV, so the host loads it in its initial state. Nothing
 * inside UML can have used those components: AMX needs
 * arch_prctl(ARCH_REQ_XCOMP_PERM), which UML's kernel does not offer. Reads
 * (GETREGSET) already work: the host copies min(its size, UML's) bytes.
 * Every other ptrace request passes through untouched.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

/* The legacy FXSAVE area, then the 64-byte XSAVE header at offset 512
 * whose first 8 bytes are XSTATE_BV (Intel SDM vol. 1, 13.4). */
#define XSAVE_HEADER_OFFSET 512

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

static ptrace_fn real_ptrace;
static size_t host_size;   /* the host's XSAVE size, learnt on first use */
static unsigned char *wide; /* host_size bytes; UML's ptrace calls are serial */

/* The host's size: a GETREGSET with a generous buffer is truncated by the
 * kernel to exactly its size, which it writes back into iov_len. */
static size_t learn_host_size(pid_t pid)
{
	size_t cap = 1 << 16;
	void *buf = malloc(cap);
	struct iovec iov = { .iov_base = buf, .iov_len = cap };

	if (!buf)
		return 0;
	if (real_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
		iov.iov_len = 0;
	free(buf);
	return iov.iov_len;
}

/* Clears the XSTATE_BV bit of every component (standard format: CPUID
 * leaf 0xD, sub-leaf i gives size in EAX and offset in EBX) that does not
 * fit in the first `len` bytes. */
static void drop_components_beyond(unsigned char *buf, size_t len)
{
	uint64_t bv;
	unsigned int eax, ebx, ecx, edx, i;

	memcpy(&bv, buf + XSAVE_HEADER_OFFSET, sizeof(bv));
	for (i = 2; i < 64; i++) {
		if (!(bv & (1ULL << i)))
			continue;
		if (!__get_cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx) ||
		    (size_t)ebx + eax > len)
			bv &= ~(1ULL << i);
	}
	memcpy(buf + XSAVE_HEADER_OFFSET, &bv, sizeof(bv));
}

long ptrace(enum __ptrace_request request, ...)
{
	va_list ap;
	pid_t pid;
	void *addr, *data;

	/* Like glibc's own wrapper: all four arguments, whatever the request. */
	va_start(ap, request);
	pid = va_arg(ap, pid_t);
	addr = va_arg(ap, void *);
	data = va_arg(ap, void *);
	va_end(ap);

	if (!real_ptrace) {
		real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
		if (!real_ptrace) {
			errno = ENOSYS;
			return -1;
		}
	}

	if (request == PTRACE_SETREGSET && (uintptr_t)addr == NT_X86_XSTATE && data) {
		struct iovec *iov = data;

		if (!host_size)
			host_size = learn_host_size(pid);
		if (!wide && host_size)
			wide = malloc(host_size);
		if (wide && iov->iov_len > XSAVE_HEADER_OFFSET + 8 &&
		    iov->iov_len < host_size) {
			struct iovec full = { .iov_base = wide, .iov_len = host_size };

			memcpy(wide, iov->iov_base, iov->iov_len);
			memset(wide + iov->iov_len, 0, host_size - iov->iov_len);
			drop_components_beyond(wide, iov->iov_len);
			return real_ptrace(request, pid, addr, &full);
		}
	}
	return real_ptrace(request, pid, addr, data);
}

#include "daemon/base/clone_on_stack.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "daemon/base/fs_util.h"

#if defined(__x86_64__)
// sc_clone3_on_stack(args, size, fn, arg) -> pid, or -errno.
//
// The System V calling convention brings args in %rdi, size in %rsi, fn in
// %rdx and arg in %rcx. The syscall instruction clobbers %rcx and %r11 only,
// so arg moves to %r8 first; the child starts after the syscall with every
// register of the parent except %rax = 0 and %rsp = the top of its stack.
// There it calls fn(arg) on a 16-byte aligned stack with no frame above it
// (%rbp = 0 marks the outermost frame) and exits the thread with the result.
extern "C" long sc_clone3_on_stack(sc::CloneArgs* args, size_t size, int (*fn)(void*), void* arg);
asm(R"(
    .text
    .globl  sc_clone3_on_stack
    .hidden sc_clone3_on_stack
    .type   sc_clone3_on_stack, @function
sc_clone3_on_stack:
    movq    %rcx, %r8
    movl    $435, %eax
    syscall
    testq   %rax, %rax
    jz      1f
    ret
1:
    xorl    %ebp, %ebp
    andq    $-16, %rsp
    movq    %r8, %rdi
    call    *%rdx
    movl    %eax, %edi
    movl    $60, %eax
    syscall
    hlt
    .size   sc_clone3_on_stack, .-sc_clone3_on_stack
)");
static_assert(SYS_clone3 == 435 && SYS_exit == 60, "x86-64 system call numbers");
#endif

namespace sc {

long CloneOnStack(CloneArgs* args, int (*fn)(void*), void* arg) {
#if defined(__x86_64__)
  long rc = sc_clone3_on_stack(args, sizeof(*args), fn, arg);
  if (rc < 0) {
    errno = static_cast<int>(-rc);
    return -1;
  }
  return rc;
#else
  (void)args;
  (void)fn;
  (void)arg;
  errno = ENOSYS;
  return -1;
#endif
}

absl::StatusOr<ChildStacks> ChildStacks::Map(size_t count, size_t size) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size = (size + page - 1) / page * page;
  size_t stride = page + size;
  size_t total = count * stride;
  void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return ErrnoStatus(errno, "mmap (child stacks)");
  ChildStacks stacks(mem, total, size, stride);
  // A stack grows down: its guard page lies below it.
  for (size_t i = 0; i < count; ++i) {
    if (mprotect(static_cast<char*>(mem) + i * stride, page, PROT_NONE) != 0) {
      return ErrnoStatus(errno, "mprotect (child stack guard)");
    }
  }
  return stacks;
}

ChildStacks::ChildStacks(ChildStacks&& other) noexcept
    : mem_(other.mem_), total_(other.total_), size_(other.size_), stride_(other.stride_) {
  other.mem_ = nullptr;
}

ChildStacks::~ChildStacks() {
  if (mem_ != nullptr) munmap(mem_, total_);
}

uint64_t ChildStacks::base(size_t i) const {
  return reinterpret_cast<uint64_t>(static_cast<char*>(mem_) + i * stride_ + (stride_ - size_));
}

}  // namespace sc

#ifndef DAEMON_BASE_CLONE_ON_STACK_H_
#define DAEMON_BASE_CLONE_ON_STACK_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace sc {

// struct clone_args of <linux/sched.h> (v2, with cgroup), spelled out to keep
// that header's macros away from glibc's <sched.h>.
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};

inline constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;

// Marks a function that runs in a CLONE_VM child on a stack of ours. The
// sanitizers' runtimes know only the threads they created: ASan takes that
// stack for a wild one (its no-return handling reports an overflow) and TSan
// for a thread it never saw, so such code is left uninstrumented. It makes
// system calls only, which is all a vfork-like child may do anyway.
#define SC_CLONE_CHILD_CODE __attribute__((no_sanitize("address", "thread", "undefined")))

// Whether CloneOnStack exists on this architecture (x86-64).
#if defined(__x86_64__)
inline constexpr bool kHaveCloneOnStack = true;
#else
inline constexpr bool kHaveCloneOnStack = false;
#endif

// clone3(args) where the child runs fn(arg) on the stack args->stack /
// args->stack_size and exits with its return value (it should execve or
// _exit first). What glibc's clone() does for the old clone(2), for clone3,
// which glibc 2.36 does not export and which alone has CLONE_INTO_CGROUP.
// Needed for CLONE_VM: the child cannot return through the caller's frames.
// Returns the child's pid in the parent, or -1 with errno. Only where
// kHaveCloneOnStack; elsewhere it fails with ENOSYS.
long CloneOnStack(CloneArgs* args, int (*fn)(void*), void* arg);

// Memory for the stacks of CLONE_VM children: `count` stacks of `size` bytes,
// each above a PROT_NONE guard page, unmapped on destruction.
class ChildStacks {
 public:
  static absl::StatusOr<ChildStacks> Map(size_t count, size_t size);
  ChildStacks(ChildStacks&& other) noexcept;
  ChildStacks& operator=(ChildStacks&&) = delete;
  ~ChildStacks();

  // The lowest address of stack `i`, as clone_args.stack wants it.
  uint64_t base(size_t i) const;
  uint64_t size() const { return size_; }

 private:
  ChildStacks(void* mem, size_t total, size_t size, size_t stride)
      : mem_(mem), total_(total), size_(size), stride_(stride) {}
  void* mem_;
  size_t total_;
  size_t size_;
  size_t stride_;  // guard page + stack
};

}  // namespace sc

#endif  // DAEMON_BASE_CLONE_ON_STACK_H_

#ifndef DAEMON_EDGE_LIMITS_H_
#define DAEMON_EDGE_LIMITS_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace sc {

// Counts what each key (a pod UID, a uid) holds at once, up to a maximum,
// so that one pod cannot take every daemon thread or fd for itself.
class KeyedLimiter {
 public:
  // Gives its unit back on destruction.
  class Slot {
   public:
    Slot() = default;
    ~Slot() { Reset(); }
    Slot(Slot&& other) noexcept : owner_(other.owner_), key_(std::move(other.key_)) {
      other.owner_ = nullptr;
    }
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        Reset();
        owner_ = other.owner_;
        key_ = std::move(other.key_);
        other.owner_ = nullptr;
      }
      return *this;
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    bool held() const { return owner_ != nullptr; }
    void Reset() {
      if (owner_ != nullptr) owner_->Release(key_);
      owner_ = nullptr;
    }

   private:
    friend class KeyedLimiter;
    Slot(KeyedLimiter* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    KeyedLimiter* owner_ = nullptr;
    std::string key_;
  };

  explicit KeyedLimiter(int max_per_key) : max_per_key_(max_per_key) {}

  // A held slot, or an empty one when `key` holds max_per_key already.
  Slot TryAcquire(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    int& count = counts_[key];
    if (count >= max_per_key_) return Slot();
    ++count;
    return Slot(this, key);
  }

  int max_per_key() const { return max_per_key_; }

  int CountFor(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second;
  }

 private:
  void Release(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(key);
    if (it != counts_.end() && --it->second <= 0) counts_.erase(it);
  }

  const int max_per_key_;
  mutable std::mutex mu_;
  std::map<std::string, int> counts_;
};

}  // namespace sc

#endif  // DAEMON_EDGE_LIMITS_H_

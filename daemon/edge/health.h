#ifndef DAEMON_EDGE_HEALTH_H_
#define DAEMON_EDGE_HEALTH_H_

#include <condition_variable>
#include <mutex>
#include <set>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace sc {

// grpc.health.v1.Health from a generated descriptor, so that reflection can
// describe it. "" and every registered service name report the daemon's
// status; others are NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch).
class HealthService final : public grpc::health::v1::Health::Service {
 public:
  explicit HealthService(std::set<std::string> services);

  // SERVING or NOT_SERVING; wakes every Watch.
  void SetServing(bool serving);
  // NOT_SERVING, and every Watch returns so that the server can stop.
  void Shutdown();

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  const std::set<std::string> services_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool serving_ = false;
  bool shutdown_ = false;
  uint64_t generation_ = 0;
};

}  // namespace sc

#endif  // DAEMON_EDGE_HEALTH_H_

#include "daemon/edge/health.h"

#include <chrono>

namespace sc {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

HealthService::HealthService(std::set<std::string> services) : services_(std::move(services)) {}

void HealthService::SetServing(bool serving) {
  std::lock_guard<std::mutex> lock(mu_);
  serving_ = serving;
  ++generation_;
  changed_.notify_all();
}

void HealthService::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  serving_ = false;
  shutdown_ = true;
  ++generation_;
  changed_.notify_all();
}

grpc::Status HealthService::Check(grpc::ServerContext*, const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  if (!request->service().empty() && services_.count(request->service()) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service \"" + request->service().substr(0, 200) + "\"");
  }
  std::lock_guard<std::mutex> lock(mu_);
  response->set_status(serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* context, const HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  bool known = request->service().empty() || services_.count(request->service()) > 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    HealthCheckResponse response;
    response.set_status(!known     ? HealthCheckResponse::SERVICE_UNKNOWN
                        : serving_ ? HealthCheckResponse::SERVING
                                   : HealthCheckResponse::NOT_SERVING);
    uint64_t seen = generation_;
    bool done = shutdown_;
    lock.unlock();
    if (!writer->Write(response) || done) return grpc::Status::OK;
    lock.lock();
    // A sync handler is not woken by cancellation, so look at it every second.
    while (generation_ == seen && !context->IsCancelled()) {
      changed_.wait_for(lock, std::chrono::seconds(1));
    }
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
  }
}

}  // namespace sc

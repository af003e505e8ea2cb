"""The load-balancer address announcer (``pyingress announce``): MetalLB layer-2 style.

One small module per concern:

- ``frames`` / ``bpf`` / ``packet``: ARP frame bytes, the classic BPF filter that keeps unrelated
  ARP traffic in the kernel, and the AF_PACKET socket (needs only CAP_NET_RAW).
- ``responder``: answers who-has for announced addresses with the interface's MAC. Addresses are
  never added to the interface, so a release is instant and leaves nothing behind.
- ``probe`` / ``garp`` / ``speaker``: RFC 5227 probe before claiming (3 probes, 80 ms apart by
  default), then gratuitous ARP in both forms Linux accepts, on MetalLB's schedule (5 bursts,
  1.1 s apart), optionally refreshed.
- ``pool`` / ``allocation``: which Service gets which address, as a pure function.
- ``reflector`` / ``cluster``: Services and EndpointSlices from the API, one Lease per address
  (plus one for the allocator, both elected with :mod:`pyingress.lease`), and the wiring between
  them.
- ``metrics``: Prometheus counters and ``/healthz`` on ``--health-port``.

Timing defaults (lease 1.2 s, renew 0.2 s, retry 0.1 s, probe window 0.24 s) put a dead node's
address on a survivor about 1.5-1.8 s after the node dies; ``benchmarks/failover.py`` measures it.
"""

// An XDP program that passes every frame, for the lab bench: the peer of a
// veth that receives XDP_TX frames (dr_ceiling.c) must run NAPI, which on a
// veth means an XDP program of its own (or GRO, which the bench turns off).

#define SEC(name) __attribute__((section(name), used))
#define XDP_PASS 2

struct xdp_md;

SEC("xdp")
int pass(struct xdp_md *ctx)
{
    (void)ctx;
    return XDP_PASS;
}

char _license[] SEC("license") = "GPL";

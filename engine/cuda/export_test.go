package cuda

// DecodeAttnV2 reports whether b sends AttentionDecode to
// attention_decode_v2 where it applies (DecodeAttnEnv read at New).
func DecodeAttnV2(b *Backend) bool { return b.decodeAttnV2 }

// DecodeAttnV3 reports whether b takes attention_decode_v3_d* on that path.
func DecodeAttnV3(b *Backend) bool { return b.decodeAttnV3 }

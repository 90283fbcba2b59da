package cuda

// DecodeAttnV2 reports whether b sends AttentionDecode to
// attention_decode_v2 where it applies (DecodeAttnEnv read at New).
func DecodeAttnV2(b *Backend) bool { return b.decodeAttnV2 }

//go:build !unix

package safetensors

// isSyncUnsupported: directories cannot be synced on these systems (Windows
// refuses to open them for writing), and renames there are already durable
// enough for our purpose.
func isSyncUnsupported(error) bool { return true }

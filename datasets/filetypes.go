package datasets

// IsDataFile reports whether the loaders read a file of path's type (by
// its extension), so that file pickers offer exactly what loads.
func IsDataFile(path string) bool {
	k, _, err := kindOf(path)
	return err == nil && k != kindUnknown
}

package engine

import "os"

// SetJSONLWrite lets external tests fail a metrics or samples write part-way.
func SetJSONLWrite(f func(path string, file *os.File, b []byte) (int, error))  { jsonlWrite = f }
func SetAtomicWrite(f func(path string, file *os.File, b []byte) (int, error)) { atomicWrite = f }

package engine

import "whet/datasets"

// VisionDataSettings tells the data options o what a run of method on the
// model folder dir does with images, as training does (visionDataSettings):
// a vision model's image tokens and processor, or why images are refused.
// It returns the model's vision kind ("" for a text model). The studio's
// data preview uses it to read a file exactly as the run will.
func VisionDataSettings(o *datasets.Options, method, dir string) (string, error) {
	return visionDataSettings(o, method, dir)
}

//go:build !unix

package atomicfile

// NoFollow is 0 where the system has no O_NOFOLLOW (Windows): links are
// followed there. whet's target systems are Linux.
const NoFollow = 0

package registry

// MigrateTo applies the embedded migrations up to version last, for tests
// that upgrade a database an older release left.
var MigrateTo = migrateTo

module kiln.test/golabels

go 1.19

module sluice.dev/keyword-filter-go

go 1.24

"""`c3d-rt bench`: measuring (:mod:`.measure`), whether a batch fits (:mod:`.memory`), what rows are judged
against (:mod:`.reference`), the rows and the report (:mod:`.rows`), and reading it (:mod:`.report`).

May import: every stage below it (core, artifacts, data, engines, runtime, export's inputs). Torch-free.
"""

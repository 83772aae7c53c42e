# Runs "imapferry WHAT ARG [DATE]" and writes its output to OUT (cmake -P;
# used by src/cli/CMakeLists.txt for the manual pages and the bash
# completion): -D BIN=path -D OUT=file -D WHAT=--man -D ARG=copy
string(TIMESTAMP date "%Y-%m-%d" UTC)   # honours SOURCE_DATE_EPOCH
set(args ${WHAT} ${ARG})
if(WHAT STREQUAL "--man")
	list(APPEND args ${date})
endif()
execute_process(COMMAND ${BIN} ${args} OUTPUT_FILE ${OUT}.tmp
	RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
	file(REMOVE ${OUT}.tmp)
	message(FATAL_ERROR "${BIN} ${args}: exit status ${rc}")
endif()
file(RENAME ${OUT}.tmp ${OUT})

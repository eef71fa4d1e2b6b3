# `jko train --out existing.jko` replaces the file only when training
# succeeded: a failing or interrupted (SIGINT) training leaves it byte for
# byte as it was, and no .partial file is left beside it or the checkpoint.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(op "${WORK}/existing.jko")
set(checkpoint "${WORK}/checkpoint.jko")
file(WRITE "${op}" "stands in for a good operator file")
file(SHA256 "${op}" before)
set(tiny --energy porous-medium --grid 16 --generated 4 --validation 1 --horizon 2 --width 4 --modes 4 --layers 1
         --hidden 8 --threads 1)

function(expect_untouched what)
  file(SHA256 "${op}" after)
  if(NOT after STREQUAL before)
    message(FATAL_ERROR "${what}: ${op} was changed")
  endif()
  foreach(file "${op}" "${checkpoint}")
    if(EXISTS "${file}.partial")
      message(FATAL_ERROR "${what}: ${file}.partial was left behind")
    endif()
  endforeach()
endfunction()

# 1. Training that throws: a density of the user's on another grid.
file(WRITE "${WORK}/wrong-grid.vti"
     "<?xml version=\"1.0\"?>\n<VTKFile type=\"ImageData\" version=\"1.0\" byte_order=\"LittleEndian\">\n"
     "<ImageData WholeExtent=\"0 3 0 3 0 0\" Origin=\"0.125 0.125 0\" Spacing=\"0.25 0.25 1\">\n"
     "<Piece Extent=\"0 3 0 3 0 0\"><PointData Scalars=\"density\">\n"
     "<DataArray type=\"Float64\" Name=\"density\" format=\"ascii\">0 1 1 0 1 2 2 1 1 2 2 1 0 1 1 0</DataArray>\n"
     "</PointData></Piece></ImageData></VTKFile>\n")
execute_process(COMMAND "${JKO}" train ${tiny} --rounds 1 --epochs 1 --initial "${WORK}/wrong-grid.vti" --quiet
                        --out "${op}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${err}" "shape other than the training grid" where)
if(rc EQUAL 0 OR where EQUAL -1)
  message(FATAL_ERROR "a training density on the wrong grid was not refused (${rc}): ${err}")
endif()
expect_untouched("failed training")

# 2. Training interrupted by Ctrl-C (SIGINT) while it runs: the signal goes
#    once the training has said it started (its first progress text), never
#    after a fixed delay (a slow start, e.g. a sanitized build on a loaded
#    machine, then met the signal before the handler was installed).
if(PYTHON)
  execute_process(COMMAND "${PYTHON}" "${CMAKE_CURRENT_LIST_DIR}/InterruptWhenStarted.py" --timeout 600 --
                          "${JKO}" train ${tiny} --rounds 500 --epochs 5 --checkpoint "${checkpoint}" --out "${op}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(FIND "${err}" "training interrupted" where)
  if(rc EQUAL 0 OR where EQUAL -1)
    message(FATAL_ERROR "an interrupted training did not say so (${rc}): ${err}")
  endif()
  string(FIND "${err}" "was not written" where)
  if(where EQUAL -1)
    message(FATAL_ERROR "the interruption message does not say that the file was kept: ${err}")
  endif()
  expect_untouched("interrupted training")
else()
  message(WARNING "no Python 3 interpreter: the Ctrl-C case is not checked")
endif()

# 3. Training that succeeds replaces the file, again without a .partial.
execute_process(COMMAND "${JKO}" train ${tiny} --rounds 1 --epochs 1 --quiet --out "${op}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(SHA256 "${op}" after)
if(NOT rc EQUAL 0 OR after STREQUAL before OR EXISTS "${op}.partial")
  message(FATAL_ERROR "a successful training did not replace ${op} cleanly (${rc}): ${err}")
endif()

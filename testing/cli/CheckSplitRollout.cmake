# `mpirun -np 2 jko rollout --solver reference`: the steps split over two
# ranks give the frames of one process (energies to 9 digits), with the
# report's per-rank figures and certificates; a step stopped at the
# iteration cap is named; another solver is refused with the reason.
# MPIEXEC is the launcher with its flags (a list), JKO the program.
set(args rollout --case barenblatt-flow --dim 3 --grid 16 --steps 2 --solver reference --threads 1 --write-every 0
         --json)
execute_process(COMMAND ${MPIEXEC} -np 1 "${JKO}" ${args} OUTPUT_VARIABLE serial RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "one process failed (${rc}): ${serial}")
endif()
execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" ${args} OUTPUT_VARIABLE split ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "two ranks failed (${rc}): ${split} ${err}")
endif()
string(JSON ranks GET "${split}" ranks)
string(JSON planes GET "${split}" planes_per_rank 1)
string(JSON peak GET "${split}" peak_rss_mb_per_rank 1)
if(NOT ranks EQUAL 2 OR NOT planes EQUAL 8 OR NOT peak GREATER 0)
  message(FATAL_ERROR "the report does not describe two ranks of 8 planes: ${split}")
endif()
foreach(frame 0 1 2)
  string(JSON a GET "${serial}" energy_per_frame ${frame})
  string(JSON b GET "${split}" energy_per_frame ${frame})
  # CMake has no floating-point arithmetic: compare 9 significant digits.
  foreach(v a b)
    string(REGEX MATCH "[1-9][0-9.]*" ${v}9 "${${v}}")
    string(REPLACE "." "" ${v}9 "${${v}9}")
    string(SUBSTRING "${${v}9}" 0 9 ${v}9)
  endforeach()
  if(NOT a9 STREQUAL b9)
    message(FATAL_ERROR "frame ${frame}: energy ${b} on two ranks, ${a} on one")
  endif()
endforeach()
# A step stopped at the iteration cap is reported with its certificate, as
# on one process.
execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" ${args} --max-iterations 3 OUTPUT_VARIABLE capped ERROR_VARIABLE err
                RESULT_VARIABLE rc)
string(JSON stopped GET "${capped}" unconverged_frames 0)
string(JSON estimate GET "${capped}" certificate 0 l1_error_estimate)
string(FIND "${err}" "stopped before the solver's tolerance (iteration cap 3)" where)
if(NOT rc EQUAL 0 OR NOT stopped EQUAL 1 OR NOT estimate GREATER 0 OR where EQUAL -1)
  message(FATAL_ERROR "a capped split step is not reported with its certificate (${rc}): ${capped} ${err}")
endif()
execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" rollout --case barenblatt-flow --dim 3 --grid 16 --steps 1
                        --solver linearized --write-every 0
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(FIND "${err}" "only the reference solver's steps are split over MPI ranks" where)
if(rc EQUAL 0 OR where EQUAL -1)
  message(FATAL_ERROR "the linearized solver on two ranks was not refused with the reason (${rc}): ${err}")
endif()
message(STATUS "two ranks: ${split}")

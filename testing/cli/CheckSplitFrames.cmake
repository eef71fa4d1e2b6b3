# `mpirun -np 2|3 jko rollout --solver reference --out DIR`: each rank writes
# its piece of every frame, rank 0 a .pvti per frame and the .pvd; VTK's
# readers give the frames of one process (check_split_frames.py). The same
# from an initial density in a .vti file, of which each rank reads its
# planes alone, rescaled to another mass over the ranks; from the .pvti of
# pieces along x that two ranks wrote ("pieces"); and from a .pvti of
# block pieces as ParaView's parallel writers write them ("blocks", against
# one process reading the .vti they were written from). A .pvti that lists
# too few pieces, or names a missing file, is refused with the reason.
# MPIEXEC is the launcher with its flags (a list), JKO the program, PYTHON
# a Python with VTK and NumPy (pvpython), WORK a scratch folder.
set(args_case rollout --case barenblatt-flow --dim 3 --grid 16 --steps 2 --solver reference --threads 1)
set(args_file rollout --initial "${WORK}/split-frames/case/frame_0001.vti" --energy aggregation --mass 2 --steps 1
              --solver reference --threads 1)
set(args_pieces rollout --initial "${WORK}/split-frames/case-np2/frame_0001.pvti" --energy aggregation --mass 2
                --steps 1 --solver reference --threads 1)
set(args_blocks rollout --initial "${WORK}/split-frames/blocks.pvti" --energy aggregation --mass 2 --steps 1
                --solver reference --threads 1)
file(REMOVE_RECURSE "${WORK}/split-frames")
foreach(run case file pieces blocks)
  set(serial "${WORK}/split-frames/${run}")
  if(run STREQUAL "blocks")
    set(serial "${WORK}/split-frames/file")
    execute_process(COMMAND "${PYTHON}" "${CMAKE_CURRENT_LIST_DIR}/write_block_pieces.py"
                            "${WORK}/split-frames/case/frame_0001.vti" "${WORK}/split-frames/blocks.pvti"
                    RESULT_VARIABLE rc ERROR_VARIABLE err)
  else()
    execute_process(COMMAND "${JKO}" ${args_${run}} --out "${serial}" OUTPUT_VARIABLE out ERROR_VARIABLE err
                    RESULT_VARIABLE rc)
  endif()
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${run}: one process failed (${rc}): ${out} ${err}")
  endif()
  foreach(ranks 2 3)
    execute_process(COMMAND ${MPIEXEC} -np ${ranks} "${JKO}" ${args_${run}} --out "${WORK}/split-frames/${run}-np${ranks}"
                    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${ranks} ranks failed (${rc}): ${out} ${err}")
    endif()
    execute_process(COMMAND "${PYTHON}" "${CMAKE_CURRENT_LIST_DIR}/check_split_frames.py" "${serial}"
                            "${WORK}/split-frames/${run}-np${ranks}" ${ranks}
                    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
    message(STATUS "${run}, ${ranks} ranks:\n${out}")
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${run}: the frames of ${ranks} ranks are not the serial ones (${rc}): ${out} ${err}")
    endif()
  endforeach()
endforeach()

# A .pvti whose pieces do not cover the image, and one whose piece is missing.
function(expect_refused pvti expected)
  execute_process(COMMAND "${JKO}" rollout --initial "${pvti}" --energy porous-medium --steps 1 --solver reference
                          --write-every 0
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  string(FIND "${err}" "${expected}" where)
  if(rc EQUAL 0 OR where EQUAL -1)
    message(FATAL_ERROR "${pvti} was not refused with '${expected}' (${rc}): ${err}")
  endif()
  message(STATUS "refused: ${err}")
endfunction()
file(READ "${WORK}/split-frames/blocks.pvti" index_text)
string(REGEX REPLACE "<Piece [^>]*blocks_2.vti\"/>" "" partial_text "${index_text}")
file(WRITE "${WORK}/split-frames/partial.pvti" "${partial_text}")
expect_refused("${WORK}/split-frames/partial.pvti" "its pieces do not cover planes")
file(RENAME "${WORK}/split-frames/blocks_3.vti" "${WORK}/split-frames/moved.vti")
expect_refused("${WORK}/split-frames/blocks.pvti" "cannot open ${WORK}/split-frames/blocks_3.vti")

# ballotctl: command-line client (gen-definition, push, snapshot, spool-batches, upload, audit).
#
# Included from client/CMakeLists.txt rather than added as a subdirectory:
# add_subdirectory(ballotctl) would create the directory ${PROJECT_BINARY_DIR}/ballotctl,
# which is where the executable itself must go (build/ballotctl).
set(BALLOTCTL_DIR ${CMAKE_CURRENT_LIST_DIR})
add_executable(ballotctl
  ${BALLOTCTL_DIR}/main.c
  ${BALLOTCTL_DIR}/audit.c
  ${BALLOTCTL_DIR}/opts.c
  ${BALLOTCTL_DIR}/gendef.c
  ${BALLOTCTL_DIR}/push.c
  ${BALLOTCTL_DIR}/snapshot.c
  ${BALLOTCTL_DIR}/spool.c
  ${BALLOTCTL_DIR}/upload.c)
target_link_libraries(ballotctl PRIVATE bal_client bal_defn bal_proto PkgConfig::JANSSON bal_warnings)
target_link_libraries(ballotctl PRIVATE bal_http_parser PkgConfig::SODIUM Threads::Threads)
target_compile_definitions(ballotctl PRIVATE BALLOTCTL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
set_target_properties(ballotctl PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})

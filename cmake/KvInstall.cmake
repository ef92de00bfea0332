# `cmake --install <build> [--prefix DIR]`: the programs, the public headers, the libraries,
# a CMake package (find_package(KovanKV CONFIG) -> KovanKV::client, KovanKV::kovan,
# KovanKV::proto) and a pkg-config file (kovan-kv.pc, the C++ client). Included last by the
# top-level CMakeLists.txt, so that it sees every module this build folder has.
#
# Layout under the prefix:
#   bin/kovan-server, bin/kovan-cli, bin/kovan-bench (when the benchmarks are built)
#   include/kovan-kv/{kovan,client,proto}/...  (kept under kovan-kv/ so that the generic folder
#                                              names client/ and proto/ cannot clash)
#   <libdir>/libkovan.a, libkovan_client.a, libkv_proto.a
#   <libdir>/cmake/KovanKV/, <libdir>/pkgconfig/kovan-kv.pc
#   share/kovan-kv/kv.proto                    (the wire contract, for other languages)
#   share/kovan-kv/kovan.toml, share/kovan-kv/systemd/kovan-server.service  (examples to copy
#                                              to /etc/kovan/ and /etc/systemd/system/)
#   share/doc/kovan-kv/                        (README.md, OPERATIONS.md, CLIENT.md, PROTOCOL.md)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(KV_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/kovan-kv)
set(KV_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/KovanKV)

foreach(program kovan-server kovan-cli kovan-bench)
  if(TARGET ${program})
    install(TARGETS ${program} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
if(TARGET kovan-server)
  install(FILES ${PROJECT_SOURCE_DIR}/docker/kovan.toml DESTINATION ${CMAKE_INSTALL_DATADIR}/kovan-kv)
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/systemd/kovan-server.service
          DESTINATION ${CMAKE_INSTALL_DATADIR}/kovan-kv/systemd)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/OPERATIONS.md
              ${PROJECT_SOURCE_DIR}/docs/CLIENT.md ${PROJECT_SOURCE_DIR}/docs/PROTOCOL.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/kovan-kv)

# Libraries: exported under the KovanKV:: namespace. The client links the protocol library
# privately; being static, it still needs it (and protobuf) at link time, so kv_proto is
# installed and exported too.
set(_kv_exported)
if(TARGET kovan)
  set_target_properties(kovan PROPERTIES EXPORT_NAME kovan)
  list(APPEND _kv_exported kovan)
  # detail/ included: kovan.hpp inlines its fast paths (test_hooks.hpp compiles to nothing
  # without KOVAN_TEST_HOOKS).
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/kovan/include/kovan DESTINATION ${KV_INSTALL_INCLUDEDIR})
endif()
set(KV_CONFIG_NEEDS_PROTOBUF FALSE)
if(TARGET kv_proto)
  set(KV_CONFIG_NEEDS_PROTOBUF TRUE)
  set_target_properties(kv_proto PROPERTIES EXPORT_NAME proto)
  list(APPEND _kv_exported kv_proto)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/proto/include/proto DESTINATION ${KV_INSTALL_INCLUDEDIR})
  install(FILES ${PROJECT_BINARY_DIR}/proto/gen/proto/kv.pb.h DESTINATION ${KV_INSTALL_INCLUDEDIR}/proto)
  install(FILES ${PROJECT_SOURCE_DIR}/proto/kv.proto DESTINATION ${CMAKE_INSTALL_DATADIR}/kovan-kv)
endif()
if(TARGET kovan_client AND TARGET kv_proto)
  set_target_properties(kovan_client PROPERTIES EXPORT_NAME client)
  list(APPEND _kv_exported kovan_client)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/client/include/client DESTINATION ${KV_INSTALL_INCLUDEDIR})
endif()

if(_kv_exported)
  install(TARGETS ${_kv_exported}
          EXPORT KovanKVTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          INCLUDES DESTINATION ${KV_INSTALL_INCLUDEDIR})
  install(EXPORT KovanKVTargets NAMESPACE KovanKV:: DESTINATION ${KV_INSTALL_CMAKEDIR})
  configure_package_config_file(
    ${PROJECT_SOURCE_DIR}/cmake/KovanKVConfig.cmake.in
    ${PROJECT_BINARY_DIR}/KovanKVConfig.cmake
    INSTALL_DESTINATION ${KV_INSTALL_CMAKEDIR})
  write_basic_package_version_file(
    ${PROJECT_BINARY_DIR}/KovanKVConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/KovanKVConfig.cmake
                ${PROJECT_BINARY_DIR}/KovanKVConfigVersion.cmake
          DESTINATION ${KV_INSTALL_CMAKEDIR})
endif()

# pkg-config: relocatable (prefix found from the .pc file's own folder), since
# `cmake --install --prefix` may choose the prefix after configuration.
if(TARGET kovan_client AND TARGET kv_proto AND NOT IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(KV_PC_PREFIX "\${pcfiledir}")
  string(REPLACE "/" ";" _kv_libdir_parts "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
  foreach(_part IN LISTS _kv_libdir_parts)
    if(_part)
      string(APPEND KV_PC_PREFIX "/..")
    endif()
  endforeach()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/kovan-kv.pc.in ${PROJECT_BINARY_DIR}/kovan-kv.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/kovan-kv.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()

# How other programs use an installed mile: pkg-config files (mile.pc for the core,
# mile-envs.pc for the simulators), a CMake package (find_package(mile) ->
# mile::core, mile::envs) and a Debian package (cpack -G DEB). Version: project(VERSION).
include(CMakePackageConfigHelpers)

# pkg-config: relative to the .pc file's own directory, so a prefix given at install
# time (cmake --install --prefix P) or a moved installation stays correct.
set(MILE_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH MILE_PC_TO_PREFIX "/root/${MILE_PC_DIR}" "/root")
string(REGEX REPLACE "/$" "" MILE_PC_TO_PREFIX "${MILE_PC_TO_PREFIX}")
foreach(pc mile mile-envs)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${CMAKE_BINARY_DIR}/pkgconfig/${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/${pc}.pc DESTINATION ${MILE_PC_DIR})
endforeach()

# CMake package: <prefix>/<libdir>/cmake/mile/mileConfig.cmake and its version file.
set(MILE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mile)
install(EXPORT mileTargets NAMESPACE mile:: DESTINATION ${MILE_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mileConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/mileConfig.cmake INSTALL_DESTINATION ${MILE_CMAKE_DIR})
# 0.x: a minor version may break the API
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/mileConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/mileConfig.cmake ${CMAKE_BINARY_DIR}/cmake/mileConfigVersion.cmake
  DESTINATION ${MILE_CMAKE_DIR})

# Debian package of the whole installation. Paths compiled into mile (mile.paths, the
# host's prefix, the MJCF directory) are the configured prefix's, so the package
# installs there: configure with -DCMAKE_INSTALL_PREFIX=/usr for a system package.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mile)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "mile developers <mile@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Learning robot policies from human interventions (C core + Lua 5.4)")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "lua5.4, libopenblas0 | libopenblas0-pthread, libdnnl2, libgomp1, libjansson4, libcsv3, libbox2d2, \
libmujoco2.2.2, libreadline8, libpng16-16, libzmq5, libssl3")
set(CPACK_STRIP_FILES OFF)
include(CPack)
